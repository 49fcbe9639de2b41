//go:build tools

// Package tools pins the Consul command so that `go build
// github.com/hashicorp/consul` resolves inside this module.
package tools

import _ "github.com/hashicorp/consul"
