package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// ageMagic opens every age-encrypted file.
const ageMagic = "age-encryption.org/v1\n"

// DefaultWorkFactor is scrypt's log2 work factor for a passphrase (age's
// default: about a second on one core, 256 MiB). It is also the most a
// file may ask for, so a hostile file cannot make a restore spend
// gigabytes on its key.
const DefaultWorkFactor = 18

// Encrypt wraps w so that what is written to it is encrypted with
// passphrase; Close finishes the file.
func Encrypt(w io.Writer, passphrase string, workFactor int) (io.WriteCloser, error) {
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, errs.WithCode(errs.Wrap(errs.Invalid, err, "backup passphrase"), CodePassphrase)
	}
	if workFactor <= 0 || workFactor > DefaultWorkFactor {
		workFactor = DefaultWorkFactor
	}
	r.SetWorkFactor(workFactor)
	wc, err := age.Encrypt(w, r)
	if err != nil {
		return nil, fmt.Errorf("encrypting backup: %w", err)
	}
	return wc, nil
}

// Plaintext returns the unencrypted content of a backup read from r: r
// itself when it is not encrypted, else decrypted with passphrase (an
// encrypted file without one, or with a wrong one, is refused with
// CodePassphrase). It also reports whether the file was encrypted.
func Plaintext(r io.Reader, passphrase string) (io.Reader, bool, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(len(ageMagic))
	if string(head) != ageMagic {
		return br, false, nil
	}
	if passphrase == "" {
		return nil, true, errs.WithCode(errs.New(errs.Invalid, "backup is encrypted: give its passphrase (--passphrase-file)"), CodePassphrase)
	}
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, true, errs.WithCode(errs.Wrap(errs.Invalid, err, "backup passphrase"), CodePassphrase)
	}
	id.SetMaxWorkFactor(DefaultWorkFactor)
	pr, err := age.Decrypt(br, id)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return nil, true, errs.WithCode(errs.New(errs.Invalid, "wrong passphrase for the backup: it does not decrypt the file"), CodePassphrase)
	case err != nil:
		return nil, true, errs.WithCode(errs.Wrap(errs.Invalid, err, "backup file is corrupt: its encryption header does not parse"), CodeCorrupt)
	}
	return &decrypted{r: pr}, true, nil
}

// decrypted classifies errors of the encrypted payload: age
// authenticates every chunk, so a flipped byte or a cut file fails here.
type decrypted struct{ r io.Reader }

func (d *decrypted) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return n, err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, errs.WithCode(errs.Wrap(errs.Invalid, err, "backup file is truncated: its encrypted content ends early"), CodeTruncated)
	}
	return n, errs.WithCode(errs.Wrap(errs.Invalid, err, "backup file is corrupt or truncated: its encrypted content does not authenticate"), CodeCorrupt)
}
