//go:build !amd64

package mldsa

func cleanUpper() {}
