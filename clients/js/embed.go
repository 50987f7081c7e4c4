// Package jsclient embeds the Gatehouse browser client so the gateway can serve it at /bff/client.js.
package jsclient

import _ "embed"

//go:embed gatehouse.js
var Source []byte
