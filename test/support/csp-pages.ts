// Browser pages that record every Content-Security-Policy problem: a refusal the browser
// logs to the console, or a document served without a policy. A test opens its pages with
// `newPage` and expects `problems()` to be empty after each case.
//
// A page that shows foreign content in a sandboxed `srcdoc` frame (the admin pages show a
// message's HTML so) inherits its policy there, and the refusals inside that frame are the
// policy doing its work: with `framed`, the refusals logged from `about:srcdoc` documents are
// kept apart, in `framed()`, for the test to check what was refused.
import type { Browser, Page } from 'playwright-core';

export interface CspWatch {
  newPage(): Promise<Page>;
  /** The problems seen since the last call, which clears them. */
  problems(): string[];
  /** With `framed`: the refusals inside srcdoc frames since the last call, which clears them. */
  framed(): string[];
}

export function watchCsp(browser: () => Browser, opts: { framed?: boolean } = {}): CspWatch {
  const seen: string[] = [];
  const inFrames: string[] = [];
  return {
    async newPage() {
      const page = await browser().newPage();
      page.on('console', (m) => {
        if (!/Content Security Policy/i.test(m.text())) return;
        if (opts.framed && m.location().url === 'about:srcdoc') inFrames.push(m.text());
        else seen.push(m.text());
      });
      page.on('response', (r) => {
        if (r.request().resourceType() === 'document' && !r.headers()['content-security-policy'])
          seen.push(`${r.url()} came without a Content-Security-Policy`);
      });
      return page;
    },
    problems: () => seen.splice(0),
    framed: () => inFrames.splice(0),
  };
}
