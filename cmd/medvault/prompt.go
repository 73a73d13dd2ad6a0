package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"unicode/utf8"

	"golang.org/x/term"
)

// readHidden reads one line from the terminal tty without echoing it, for
// a passphrase. The terminal is in raw mode while it reads and is restored
// before it returns, so control keys arrive as bytes: Ctrl-C cancels, and
// Ctrl-D on an empty line cancels. (term.ReadPassword keeps the terminal
// cooked: a Ctrl-D there makes every read return nothing, which it reads
// again forever, and a Ctrl-C kills the process with echo still off.)
//
// Backspace removes the last character, Ctrl-W the last word, Ctrl-U the
// whole line; other control keys and escape sequences (arrow keys) are
// ignored rather than kept in the passphrase. A line longer than
// maxPassphrase bytes is refused. When it cancels or refuses, whatever was
// typed after is discarded, so the rest of a passphrase never reaches the
// shell. The bytes read are wiped from every buffer but the one returned.
// A SIGTERM, SIGHUP or SIGQUIT while it reads restores the terminal before
// the signal ends the process.
// endingSignals returns the signals readHidden catches: SIGTERM, SIGHUP
// and SIGQUIT, but not one the process was started ignoring (nohup ignores
// SIGHUP). Caught, such a signal would end the process only once
// readHidden gave it back its first disposition, ignored: the prompt then
// went on reading with the terminal no longer raw, echoing what was typed.
func endingSignals() []os.Signal {
	var out []os.Signal
	for _, s := range []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		if !signal.Ignored(s) {
			out = append(out, s)
		}
	}
	return out
}

func readHidden(tty *os.File, prompt string) (pass []byte, err error) {
	fd := int(tty.Fd())
	// A signal that ends the process while the terminal is raw (kill,
	// a closed window) would leave the shell without echo: give the
	// terminal back first, then let the signal do what it does. Caught
	// from before the terminal goes raw, so none slips in between.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, endingSignals()...)
	state, err := term.MakeRaw(fd)
	if err != nil {
		signal.Stop(sigs)
		return nil, fmt.Errorf("terminal: %w", err)
	}
	defer term.Restore(fd, state)
	stop := make(chan struct{})
	defer func() { signal.Stop(sigs); close(stop) }()
	go func() {
		select {
		case sig := <-sigs:
			term.Restore(fd, state)
			discardTyped(fd)
			fmt.Fprint(tty, "\r\n")
			signal.Reset(sig)
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-stop:
		}
	}()
	fmt.Fprint(tty, prompt)
	// Raw mode does not turn "\n" into a new line: say "\r\n".
	defer fmt.Fprint(tty, "\r\n")
	line := make([]byte, 0, 128)
	defer func() {
		if err != nil {
			clear(line)
			discardTyped(fd)
		}
	}()
	var b [1]byte
	escape := 0 // 1 after ESC, 2 inside a control sequence
	for {
		n, rerr := tty.Read(b[:])
		if n == 0 {
			if rerr == nil || rerr == io.EOF {
				return nil, errCancelled
			}
			return nil, fmt.Errorf("terminal: %w", rerr)
		}
		c := b[0]
		switch {
		case escape == 1 && (c == '[' || c == 'O'):
			escape = 2
			continue
		case escape == 2 && c >= 0x20 && c < 0x40:
			continue // parameters of the sequence
		case escape > 0:
			escape = 0
			if c >= 0x40 && c < 0x7f {
				continue // the sequence's final byte
			}
		}
		switch c {
		case '\r':
			return line, nil
		case '\n':
			// Enter sends \r in raw mode; a \n is the tail of a \r\n,
			// or Ctrl-J. It ends a line, but does not make an empty one:
			// a terminal sending \r\n would otherwise answer the next
			// prompt (Repeat passphrase) with nothing.
			if len(line) > 0 {
				return line, nil
			}
		case 3: // Ctrl-C
			return nil, errCancelled
		case 4: // Ctrl-D
			if len(line) == 0 {
				return nil, errCancelled
			}
		case 27: // ESC
			escape = 1
		case 127, '\b': // Backspace, Ctrl-H
			line = dropLast(line, false)
		case 23: // Ctrl-W
			line = dropLast(line, true)
		case 21: // Ctrl-U
			clear(line)
			line = line[:0]
		default:
			if c < 0x20 {
				continue // another control key: not part of a passphrase
			}
			if len(line) == maxPassphrase {
				return nil, usagef("passphrase longer than %d bytes", maxPassphrase)
			}
			if len(line) == cap(line) {
				grown := make([]byte, len(line), 2*cap(line))
				copy(grown, line)
				clear(line)
				line = grown
			}
			line = append(line, c)
		}
	}
}

// dropLast removes the last character of line (a whole UTF-8 sequence), or
// with word set the last word and the spaces after it, wiping what it
// removes.
func dropLast(line []byte, word bool) []byte {
	end := len(line)
	for word && end > 0 && line[end-1] == ' ' {
		end--
	}
	for end > 0 {
		_, size := utf8.DecodeLastRune(line[:end])
		end -= size
		if !word || end == 0 || line[end-1] == ' ' {
			break
		}
	}
	clear(line[end:])
	return line[:end]
}
