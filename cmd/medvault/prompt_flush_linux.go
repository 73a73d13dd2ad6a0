package main

import "golang.org/x/sys/unix"

// discardTyped drops what was typed on the terminal and not yet read.
func discardTyped(fd int) { unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) }
