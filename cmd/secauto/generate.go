package main

// The completion scripts and the command reference are generated from the
// command tree and committed; a test in pkg/cli fails when they are stale.
//go:generate go run ./gendocs -completions ../../completions -docs ../../docs/cli
