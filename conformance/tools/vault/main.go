// Command vault is the HashiCorp Vault CLI, built from the
// github.com/hashicorp/vault module so that tests can run
// `vault server -dev` without downloading a release binary.
//
// Vault is licensed under the Business Source License 1.1 (BUSL-1.1);
// Signet uses it only to test against a real Vault, never ships it.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
