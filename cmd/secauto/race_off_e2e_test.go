//go:build !race

package main

// raceBuild says the tests, and so the binary they run, were built with the
// race detector (see race_on_e2e_test.go).
const raceBuild = false
