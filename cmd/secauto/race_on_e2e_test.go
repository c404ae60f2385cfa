//go:build race

package main

// raceBuild says the tests, and so the binary they run, were built with the
// race detector, which makes the store's work several times slower: the
// heaviest end-to-end tests then use smaller stores and fewer rounds.
const raceBuild = true
