//go:build signet_cloudkms

package kms

// The cloud key managers pull in their SDKs (tens of MB): only binaries
// built with -tags signet_cloudkms carry them.
import (
	_ "go.step.sm/crypto/kms/awskms"
	_ "go.step.sm/crypto/kms/azurekms"
	_ "go.step.sm/crypto/kms/cloudkms"
)
