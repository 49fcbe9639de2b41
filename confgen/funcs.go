package confgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// Instance is a healthy service instance as templates see it.
type Instance struct {
	ID, Service, Node, Address string
	Port                       int
	Tags                       []string
	Meta                       map[string]string
}

// Peer is one drover node of the WireGuard mesh as templates see it.
type Peer struct {
	Node, Subnet, Endpoint string
	Reachable              bool // its mesh check passes
}

// Services gives templates drover's service and mesh data; may be nil. An
// error (Consul not read yet, or failing) fails the render, so the old file
// is kept: a file is never written without its upstreams because Consul
// did not answer.
type Services interface {
	Service(name string) ([]Instance, error) // healthy instances, sorted by ID
	ServiceNames() ([]string, error)         // sorted
	Nodes() ([]string, error)                // drover node names, sorted
	MeshPeers() ([]Peer, error)
}

// lookupTimeout bounds each DNS lookup a template makes, so a dead
// resolver fails the render instead of hanging it.
const lookupTimeout = 10 * time.Second

// maxSeq bounds seq, so a bad KV value cannot make a render allocate
// without limit.
const maxSeq = 1 << 20

// FuncMap returns the template functions for one render over store s and
// svc. svc may be nil: service, services, nodes and meshPeers then return
// empty results.
//
// The functions are confd's, with its names and semantics (confd's
// docs/templates.md): get, gets, getv, getvs, ls, lsdir, exists, json,
// jsonArray, split, join, replace, base, dir, toUpper, toLower, contains,
// trimSuffix, map, getenv, datetime, atoi, add, sub, mul, div, mod, seq,
// lookupIP, lookupIPV4, lookupIPV6, lookupSRV, base64Encode, base64Decode,
// parseBool, reverse, sortByLength, sortKVByLength, fileExists; plus
// strQuote (strconv.Quote) and drover's service, services, nodes and
// meshPeers. A function never panics; failures are errors that fail the
// render and name the function (text/template adds it) and the key.
func FuncMap(s *Store, svc Services) template.FuncMap {
	return funcMap(s, svc, net.DefaultResolver)
}

// resolver is the part of *net.Resolver the lookup functions use.
type resolver interface {
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

func funcMap(s *Store, svc Services, r resolver) template.FuncMap {
	if s == nil {
		s = NewStore(nil)
	}
	d := dns{r: r}
	return template.FuncMap{
		// The store (confd's memkv).
		"get":    s.Get,
		"gets":   s.GetAll,
		"getv":   s.GetValue,
		"getvs":  s.GetAllValues,
		"ls":     s.List,
		"lsdir":  s.ListDir,
		"exists": s.Exists,

		// Strings, paths and data.
		"base":         path.Base,
		"dir":          path.Dir,
		"split":        strings.Split,
		"join":         strings.Join,
		"replace":      strings.Replace,
		"toUpper":      strings.ToUpper,
		"toLower":      strings.ToLower,
		"contains":     strings.Contains,
		"trimSuffix":   strings.TrimSuffix,
		"strQuote":     strconv.Quote,
		"json":         jsonObject,
		"jsonArray":    jsonArray,
		"map":          makeMap,
		"base64Encode": func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) },
		"base64Decode": base64Decode,
		"parseBool":    strconv.ParseBool,
		"atoi":         strconv.Atoi,

		// Arithmetic and lists.
		"add":            func(a, b int) int { return a + b },
		"sub":            func(a, b int) int { return a - b },
		"mul":            func(a, b int) int { return a * b },
		"div":            div,
		"mod":            mod,
		"seq":            seq,
		"reverse":        reverse,
		"sortByLength":   sortByLength,
		"sortKVByLength": sortKVByLength,

		// The host.
		"getenv":     getenv,
		"datetime":   time.Now,
		"fileExists": fileExists,
		"lookupIP":   func(host string) ([]string, error) { return d.ips(host, nil) },
		"lookupIPV4": func(host string) ([]string, error) { return d.ips(host, isIPv4) },
		"lookupIPV6": func(host string) ([]string, error) { return d.ips(host, isIPv6) },
		"lookupSRV":  d.srv,

		// drover.
		"service": func(name string) ([]Instance, error) {
			if svc == nil {
				return nil, nil
			}
			return svc.Service(name)
		},
		"services": func() ([]string, error) {
			if svc == nil {
				return nil, nil
			}
			return svc.ServiceNames()
		},
		"nodes": func() ([]string, error) {
			if svc == nil {
				return nil, nil
			}
			return svc.Nodes()
		},
		"meshPeers": func() ([]Peer, error) {
			if svc == nil {
				return nil, nil
			}
			return svc.MeshPeers()
		},
	}
}

func jsonObject(v string) (map[string]any, error) {
	var out map[string]any
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("parsing JSON object: %w", err)
	}
	return out, nil
}

func jsonArray(v string) ([]any, error) {
	var out []any
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("parsing JSON array: %w", err)
	}
	return out, nil
}

// makeMap builds a map from key/value pairs: map "a" 1 "b" 2.
func makeMap(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("odd number of arguments (%d), want key/value pairs", len(kv))
	}
	out := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("key %v (argument %d) is %T, want string", kv[i], i+1, kv[i])
		}
		out[k] = kv[i+1]
	}
	return out, nil
}

func base64Decode(v string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", fmt.Errorf("decoding base64: %w", err)
	}
	return string(b), nil
}

func div(a, b int) (int, error) {
	if b == 0 {
		return 0, fmt.Errorf("division of %d by zero", a)
	}
	return a / b, nil
}

func mod(a, b int) (int, error) {
	if b == 0 {
		return 0, fmt.Errorf("modulo of %d by zero", a)
	}
	return a % b, nil
}

// seq returns first, first+1, …, last (empty when last < first), like
// GNU seq.
func seq(first, last int) ([]int, error) {
	if last < first {
		return nil, nil
	}
	n := uint64(last) - uint64(first) + 1 // no overflow: last >= first
	if n > maxSeq {
		return nil, fmt.Errorf("sequence %d..%d is longer than %d", first, last, maxSeq)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = first + i
	}
	return out, nil
}

// reverse returns a reversed copy of any slice or array ([]string,
// []KVPair, jsonArray's []any, …); it leaves its argument alone.
func reverse(v any) (any, error) {
	rv := reflect.ValueOf(v)
	if k := rv.Kind(); k != reflect.Slice && k != reflect.Array {
		return nil, fmt.Errorf("cannot reverse %T, want a list", v)
	}
	n := rv.Len()
	out := reflect.MakeSlice(reflect.SliceOf(rv.Type().Elem()), n, n)
	for i := range n {
		out.Index(i).Set(rv.Index(n - 1 - i))
	}
	return out.Interface(), nil
}

// sortByLength returns a copy of v sorted by length, then lexically.
func sortByLength(v []string) []string {
	out := append([]string(nil), v...)
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) < len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// sortKVByLength returns a copy of v sorted by key length, then key.
func sortKVByLength(v []KVPair) []KVPair {
	out := append([]KVPair(nil), v...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	return out
}

// getenv returns the variable key, or def[0] (else "") when it is unset or
// empty.
func getenv(key string, def ...string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	if len(def) > 0 {
		return def[0]
	}
	return ""
}

// fileExists reports whether p exists. As in confd, a stat failure other
// than "no such file" (permission denied, say) counts as existing.
func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR))
}

// dns runs the lookup functions. A name that does not exist gives an
// empty list, as in confd; any other failure (timeout, unreachable
// server) is an error, so the render fails and the file keeps its last
// good content instead of losing its servers.
type dns struct{ r resolver }

func isIPv4(ip net.IP) bool { return ip.To4() != nil }
func isIPv6(ip net.IP) bool { return ip.To4() == nil }

// ips returns host's addresses that pass keep (all when keep is nil) as
// strings sorted lexically, so a DNS server's shuffling causes no change.
func (d dns) ips(host string, keep func(net.IP) bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	ips, err := d.r.LookupIP(ctx, "ip", host)
	if err != nil && !notFound(err) {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	out := []string{}
	for _, ip := range ips {
		if keep == nil || keep(ip) {
			out = append(out, ip.String())
		}
	}
	sort.Strings(out)
	return out, nil
}

// srv returns the SRV records of _service._proto.name sorted as confd
// sorts them: by target, port, priority and weight written one after the
// other as a string; records that give the same string (port 1 priority
// 23, port 12 priority 3) are then ordered by port, priority and weight,
// so the result never depends on the server's order.
func (d dns) srv(service, proto, name string) ([]*net.SRV, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	_, srvs, err := d.r.LookupSRV(ctx, service, proto, name)
	if err != nil {
		if notFound(err) {
			return []*net.SRV{}, nil
		}
		return nil, fmt.Errorf("looking up SRV %s/%s/%s: %w", service, proto, name, err)
	}
	key := func(s *net.SRV) string {
		return s.Target + strconv.Itoa(int(s.Port)) + strconv.Itoa(int(s.Priority)) + strconv.Itoa(int(s.Weight))
	}
	out := append([]*net.SRV(nil), srvs...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ka, kb := key(a), key(b); ka != kb {
			return ka < kb
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Weight < b.Weight
	})
	return out, nil
}

// notFound reports whether err says the name has no records.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
