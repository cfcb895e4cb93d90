package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	lark "github.com/larksuite/oapi-sdk-go/v3"

	"kbbot/bot/openapi"
	"kbbot/bot/wiki"
	"kbbot/rag"
	"kbbot/store/retry"
)

// syncRetry is how the sync's Open API calls are retried: patient, since
// a rate limit's window is up to a minute (x-ogw-ratelimit-reset) and a
// sync is not in a hurry.
var syncRetry = retry.Policy{Attempts: 6, Base: 500 * time.Millisecond, Max: 65 * time.Second}

// newSyncer builds the sync of the configured Feishu sources into eng,
// calling the Open API through client with the sync's own retries and
// pacing.
func (a *app) newSyncer(eng *rag.Engine, client *lark.Client) *wiki.Syncer {
	api := openapi.New(client, a.log, syncRetry)
	return wiki.New(api, eng, wiki.Config{
		Spaces:  a.cfg.WikiSpaces,
		Roots:   a.cfg.WikiRoots,
		Docs:    a.cfg.FeishuDocs,
		BaseURL: a.cfg.DocBaseURL,
	}, a.log)
}

// sync runs one sync of the Feishu sources into the knowledge index. It
// succeeds when the sync completed, also with documents it could not
// read (they are listed); it fails when the sync could not run.
func (a *app) sync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(a.stderr, "usage: kbbot sync")
		return errUsage
	}
	if err := a.cfg.ValidateSync(); err != nil {
		return fmt.Errorf("sync: cannot run:\n%w", err)
	}
	eng, idx, err := a.openEngine(ctx)
	if err != nil {
		return err
	}
	defer idx.Close()
	s := a.newSyncer(eng, openapi.NewLarkClient(a.cfg.FeishuAppID, a.cfg.FeishuAppSecret, a.cfg.FeishuBaseURL, a.log))
	// The total grows as the walk finds documents.
	var finish func()
	s.Progress, finish = a.progressBar("syncing")
	rep, err := s.Run(ctx)
	finish()
	if err != nil {
		return err
	}
	printSyncReport(a.stdout, rep)
	return nil
}

// printSyncReport writes the summary line, then one line per document
// skipped or failed, with why.
func printSyncReport(w io.Writer, rep wiki.Report) {
	fmt.Fprintln(w, "sync:", rep.Summary())
	for _, s := range rep.Failed {
		fmt.Fprintf(w, "failed:  %s %s: %s\n", s.Title, s.URL, s.Reason)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped: %s %s: %s\n", s.Title, s.URL, s.Reason)
	}
}
