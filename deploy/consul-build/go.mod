// Package consul-build builds the Consul test server (v1.14.8, the last MPL
// release) for drover's sandbox and end-to-end tests. It is a separate module
// so that Consul's large dependency tree never enters drover's go.mod.
module drover.local/consul-build

go 1.26

require (
	github.com/hashicorp/consul v1.14.8
	github.com/hashicorp/consul/api v1.18.1
)
