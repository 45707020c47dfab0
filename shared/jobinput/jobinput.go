// Package jobinput keeps the input files of bulk jobs (imports) in the
// JetStream object store subject.BucketJobInputs, so that a file of tens
// of megabytes reaches the registry in 128 KiB chunks instead of one NATS
// message, which a cluster's default 1 MiB max_payload would refuse.
//
// The gateway Puts an uploaded file and sends the create request with the
// job.Input it got back; the registry Reads the file by name, checking
// its size and digest, and Deletes it when the job ends. An input left
// behind (its caller died between upload and create) expires with the
// bucket's TTL.
package jobinput

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// TooLarge is the error of an input over limit bytes: Invalid, code
// errs.CodeInputTooLarge, naming field and the limit and the setting
// that sets it.
func TooLarge(field string, limit int64) error {
	e := errs.Fields(errs.FieldError{Field: field, Rule: fmt.Sprintf("must be at most %d bytes (%s), the limit of one job input (--max-import-bytes)", limit, mib(limit))})
	return errs.WithCode(e, errs.CodeInputTooLarge)
}

func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func store(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	obs, err := js.ObjectStore(ctx, subject.BucketJobInputs)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening object store %s", subject.BucketJobInputs)
	}
	return obs, nil
}

// limited passes at most limit bytes of r and fails with errOverLimit
// once it has seen one more, which makes the object store drop the chunks
// it stored.
type limited struct {
	r    io.Reader
	left int64
	over bool
}

var errOverLimit = errors.New("input over the limit")

func (l *limited) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return 0, errOverLimit
	}
	return n, err
}

// Put stores what r yields as a new input and returns its reference.
// More than limit bytes is TooLarge(field, limit) and leaves nothing in
// the store; so does any other failure.
func Put(ctx context.Context, js jetstream.JetStream, r io.Reader, limit int64, field string) (job.Input, error) {
	obs, err := store(ctx, js)
	if err != nil {
		return job.Input{}, err
	}
	lr := &limited{r: r, left: limit}
	info, err := obs.Put(ctx, jetstream.ObjectMeta{Name: nuid.Next(), Description: "job input"}, lr)
	if lr.over {
		return job.Input{}, TooLarge(field, limit)
	}
	if err != nil {
		return job.Input{}, errs.Wrap(errs.Unavailable, err, "storing the job input in %s", subject.BucketJobInputs)
	}
	return job.Input{Name: info.Name, Digest: info.Digest, Size: int64(info.Size)}, nil
}

// Read returns the input's file. An input over limit is TooLarge (the
// store is not read); one that is gone, or whose digest is not the one
// named, is NotFound with code errs.CodeInputGone.
func Read(ctx context.Context, js jetstream.JetStream, in job.Input, limit int64) ([]byte, error) {
	if in.Name == "" || in.Digest == "" {
		return nil, errs.Field("input", "must name the input (name and digest)")
	}
	obs, err := store(ctx, js)
	if err != nil {
		return nil, err
	}
	info, err := obs.GetInfo(ctx, in.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, gone(in, "is not in the job inputs store (deleted, expired after %s, or never stored)", subject.JobInputsTTL)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading job input %s", in.Name)
	}
	if int64(info.Size) > limit {
		return nil, TooLarge("input", limit)
	}
	if info.Digest != in.Digest {
		return nil, gone(in, "has digest %s in the store, not %s", info.Digest, in.Digest)
	}
	data, err := obs.GetBytes(ctx, in.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, gone(in, "was deleted while it was read")
	}
	if errors.Is(err, jetstream.ErrDigestMismatch) {
		return nil, gone(in, "does not match its digest")
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading job input %s", in.Name)
	}
	return data, nil
}

func gone(in job.Input, format string, args ...any) error {
	return errs.WithCode(errs.New(errs.NotFound, "job input %s "+format, append([]any{in.Name}, args...)...), errs.CodeInputGone)
}

// Delete removes an input; one already gone is not an error.
func Delete(ctx context.Context, js jetstream.JetStream, name string) error {
	obs, err := store(ctx, js)
	if err != nil {
		return err
	}
	if err := obs.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return errs.Wrap(errs.Unavailable, err, "deleting job input %s", name)
	}
	return nil
}
