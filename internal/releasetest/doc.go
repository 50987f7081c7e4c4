// Package releasetest tests scripts/release.sh: it builds a release twice and checks that
// the two are byte-identical, then installs the .deb and the .rpm into sandboxed roots,
// opens the OCI image and runs `gatehouse version` from each.
//
// The test needs root, buildah, dpkg and rpm, and takes minutes, so it is built only with
// the release tag; scripts/test.sh runs it:
//
//	go test -tags release -v ./internal/releasetest
//
// GATEHOUSE_RELEASE_TARGETS (e.g. "linux/amd64") limits the platforms built.
package releasetest
