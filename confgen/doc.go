// Package confgen renders arbitrary files from Consul, confd-style:
// template resources, confd-compatible template functions plus service
// functions, check_cmd on a staged file, atomic replace and reload_cmd.
//
// It reads Consul only through the watch hub (discovery/watch: KV
// prefixes, and services as members of the hub's shared service set) and
// never manages HAProxy itself (lb does).
package confgen
