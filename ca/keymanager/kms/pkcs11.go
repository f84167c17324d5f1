package kms

// PKCS#11 needs cgo (without it the package registers a stub that refuses).
import _ "go.step.sm/crypto/kms/pkcs11"
