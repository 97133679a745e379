// Browser pages that record every Content-Security-Policy problem: a refusal the browser
// logs to the console, or a document served without a policy. A test opens its pages with
// `newPage` and expects `problems()` to be empty after each case.
import type { Browser, Page } from 'playwright-core';

export interface CspWatch {
  newPage(): Promise<Page>;
  /** The problems seen since the last call, which clears them. */
  problems(): string[];
}

export function watchCsp(browser: () => Browser): CspWatch {
  const seen: string[] = [];
  return {
    async newPage() {
      const page = await browser().newPage();
      page.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) seen.push(m.text());
      });
      page.on('response', (r) => {
        if (r.request().resourceType() === 'document' && !r.headers()['content-security-policy'])
          seen.push(`${r.url()} came without a Content-Security-Policy`);
      });
      return page;
    },
    problems: () => seen.splice(0),
  };
}
