//go:build !linux

package amscontract

import "os/exec"

// setParentDeathSignal: only Linux can tie the daemon's life to ours; elsewhere the
// test's cleanup alone stops it.
func setParentDeathSignal(*exec.Cmd) {}
