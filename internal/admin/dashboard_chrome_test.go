package admin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser-test plumbing: Debian's Chromium, headless, driven by chromedp.

const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds every single wait and action in the browser tests.
const stepTimeout = 15 * time.Second

// newBrowser starts a headless Chromium with a fresh profile and returns a
// chromedp context for one tab; the browser stops at the end of the test.
// Without /usr/bin/chromium the test is skipped loudly, except under
// CI=true, where that is a failure.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing (%v): browser tests must run in CI; install Debian's chromium", chromiumPath, err)
		}
		// Loud even without -v: a skipped browser test is easy to miss.
		msg := fmt.Sprintf("\n*** SKIPPING BROWSER TEST %s: %s not found (apt-get install chromium).\n*** Under CI=true this is a failure. ***\n", t.Name(), chromiumPath)
		fmt.Fprint(os.Stderr, msg)
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// The first Do starts the browser and ties it to ctx: no timeout on it
	// (it would stop the browser), so bound the start with a watchdog.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", chromiumPath, err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-started
		t.Fatalf("%s did not start within 30s", chromiumPath)
	}
	return ctx
}

// do runs browser steps within stepTimeout.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page within stepTimeout.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS waits, at most stepTimeout, until the expression is truthy in the
// page. (chromedp.Poll compiles its predicate with new Function, which the
// page's Content-Security-Policy forbids; this loop evaluates from outside.)
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	var err error
	for {
		var ok bool
		if ok, err = chromedp.Run(sctx, chromedp.Evaluate[bool]("!!("+expr+")")); err == nil && ok {
			return
		}
		select {
		case <-sctx.Done():
			if err == nil {
				err = errors.New("still false")
			}
			t.Fatalf("waiting for %s: %v (%s)\npage text:\n%s", what, err, expr, pageText(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pageText is the visible text of the page, for failure messages.
func pageText(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		return err.Error()
	}
	return s
}

// nodeSel is the CSS selector of a node's row.
func nodeSel(cluster, node string) string {
	return fmt.Sprintf(`section[data-cluster=%q] tr[data-node=%q]`, cluster, node)
}

// nodeState is the data-state the page shows for a node.
func nodeState(t *testing.T, ctx context.Context, cluster, node string) string {
	return eval[string](t, ctx, fmt.Sprintf("document.querySelector(%s).dataset.state", strconv.Quote(nodeSel(cluster, node))))
}

// waitState waits until the page shows the node in state.
func waitState(t *testing.T, ctx context.Context, cluster, node, state string) {
	t.Helper()
	waitJS(t, ctx, cluster+"/"+node+" "+state,
		fmt.Sprintf("(document.querySelector(%s) || {dataset: {}}).dataset.state === %q", strconv.Quote(nodeSel(cluster, node)), state))
}

// alertText is the text of the page's error box ("" when hidden).
func alertText(t *testing.T, ctx context.Context) string {
	return eval[string](t, ctx, `document.getElementById('alert').hidden ? '' : document.getElementById('alert').innerText`)
}

// screenshot saves the viewport as docs/NAME when PB_SCREENSHOTS=1, so
// that normal runs leave the tree untouched.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("PB_SCREENSHOTS") != "1" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "..", "docs", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
