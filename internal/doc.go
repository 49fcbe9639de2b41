// Package internal holds shared mechanisms only (build info, backoff,
// coalescing triggers, atomic files). Nothing in it knows drover's domain.
package internal
