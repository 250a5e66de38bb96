// Package model holds the types that describe a LinUCB model and are shared
// by the packages that build, store and serve it: the feature spec
// (model/spec) produces them, the Redis format (model/store) records them.
// It imports nothing of the project, so any package may depend on it.
package model

// Group is a one-hot group of features: in every context exactly one of
// them is 1 and the others 0 — or, if Optional, at most one is 1.
type Group struct {
	Features []int `json:"features"`           // feature indexes
	Optional bool  `json:"optional,omitempty"` // all zero is allowed
}

// Digits is the number of choices of the group in a pattern of one-hot
// features: one per feature, plus "none" if the group is optional.
func (g Group) Digits() int {
	if g.Optional {
		return len(g.Features) + 1
	}
	return len(g.Features)
}
