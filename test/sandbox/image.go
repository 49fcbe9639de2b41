package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DemoImage is the image every sandbox host has loaded.
const DemoImage = "drover-demo:latest"

// imageConfig is the subset of the Docker/OCI image config we write.
type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type containerConfig struct {
	Entrypoint   []string            `json:"Entrypoint"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Healthcheck  *healthConfig       `json:"Healthcheck,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

type healthConfig struct {
	Test     []string      `json:"Test"`
	Interval time.Duration `json:"Interval"`
	Timeout  time.Duration `json:"Timeout"`
	Retries  int           `json:"Retries"`
}

// ImageArchive builds a `docker load` archive of a FROM-scratch image that
// holds one static binary as its entrypoint, the equivalent of
//
//	FROM scratch
//	COPY drover-demo /drover-demo
//	EXPOSE 8080
//	HEALTHCHECK --interval=2s --timeout=1s CMD ["/drover-demo","get","http://127.0.0.1:8080/healthz"]
//	ENTRYPOINT ["/drover-demo"]
//
// without needing a builder or a registry. The archive is deterministic for
// a given binary.
func ImageArchive(binary, tag string) ([]byte, error) {
	exe, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("reading %s for the demo image: %w", binary, err)
	}
	name := "/" + filepath.Base(binary)
	var layer bytes.Buffer
	lt := tar.NewWriter(&layer)
	if err := addFile(lt, strings.TrimPrefix(name, "/"), exe, 0o755); err != nil {
		return nil, err
	}
	if err := lt.Close(); err != nil {
		return nil, err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(layerSum[:])

	var cfg imageConfig
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = time.Unix(0, 0).UTC()
	cfg.Config = containerConfig{
		Entrypoint:   []string{name},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Healthcheck: &healthConfig{
			Test:     []string{"CMD", name, "get", "-timeout", "1s", "http://127.0.0.1:8080/healthz"},
			Interval: 2 * time.Second,
			Timeout:  time.Second,
			Retries:  3,
		},
	}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{"sha256:" + layerID}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{tag},
		"Layers":   []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{cfgName, cfgJSON},
		{layerID + "/layer.tar", layer.Bytes()},
		{"manifest.json", manifest},
	} {
		if err := addFile(tw, f.name, f.data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func addFile(tw *tar.Writer, name string, data []byte, mode int64) error {
	hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s to the image archive: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

// loadImage loads archive into host h's dockerd.
func (s *Sandbox) loadImage(ctx context.Context, h Host, archive []byte) error {
	cmd, err := s.Command(ctx, h.Name, "docker", "load", "-q")
	if err != nil {
		return err
	}
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("loading %s into %s: %w: %s", DemoImage, h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
