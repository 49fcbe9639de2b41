// Package internal holds shared mechanisms only, one package each: buildinfo
// (version), backoff (retry delays and drover's one retry loop), atomicfile
// (the one way to replace a file), execcmd (shell commands with a process
// group and a bounded wait), aclpolicy (the ACL rules drover needs, as
// text). Nothing in it knows drover's domain.
package internal
