package confgen

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

type benchServices struct{ insts []Instance }

func (b benchServices) Service(string) ([]Instance, error) { return b.insts, nil }
func (b benchServices) ServiceNames() ([]string, error)    { return []string{"web"}, nil }
func (b benchServices) Nodes() ([]string, error)           { return nil, nil }
func (b benchServices) MeshPeers() ([]Peer, error)         { return nil, nil }

// BenchmarkRender renders a template that walks 10,000 keys and 1,000
// service instances (`go test -bench Render ./confgen/`, or make
// bench-confgen); it reports the time per render and the output size.
func BenchmarkRender(b *testing.B) {
	dir := b.TempDir()
	tmpl := filepath.Join(dir, "big.tmpl")
	text := `{{range gets "/upstreams/*/addr"}}{{.Key}} {{.Value}}
{{end}}{{range service "web"}}server {{.ID}} {{.Address}}:{{.Port}}
{{end}}{{len (ls "/upstreams")}}
`
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	kv := map[string]string{}
	for i := 0; i < 10000; i++ {
		kv[fmt.Sprintf("app/upstreams/u%05d/addr", i)] = fmt.Sprintf("10.1.%d.%d:80", i/256, i%256)
	}
	var svc benchServices
	for i := 0; i < 1000; i++ {
		svc.insts = append(svc.insts, Instance{ID: fmt.Sprintf("drover:h%d:%012d:8080", i%50, i), Address: fmt.Sprintf("10.42.%d.%d", i/250, i%250+2), Port: 8080})
	}
	r := Resource{Src: tmpl, Keys: []string{"/upstreams"}, Prefix: "/app"}
	var size int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := Render(r, kv, svc)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "bytes/render")
}
