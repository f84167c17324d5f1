// Package openssl holds interoperability tests of Signet's post-quantum
// credentials (pq/...) against OpenSSL 3.5, run through the
// shared/tools/openssl35 wrapper found beside the repository, and against
// Go 1.27's crypto/x509 (files built with the go1.27 tag). It has no
// non-test code.
package openssl
