// The locale fallback of templates: the recipient's locale, its language, the default.
import { localeKey } from './loader.ts';

const chains = new Map<string, string[]>();

/** `de-AT` -> [`de-at`, `de`, default]: the user's locale, its language, the default. */
export function localeChain(locale: string, defaultLocale: string): string[] {
  const key = `${locale}\u0000${defaultLocale}`;
  let chain = chains.get(key);
  if (!chain) {
    if (chains.size > 1000) chains.clear();
    chains.set(key, (chain = buildLocaleChain(locale, defaultLocale)));
  }
  return chain;
}

function buildLocaleChain(locale: string, defaultLocale: string): string[] {
  const out: string[] = [];
  const key = localeKey(locale || defaultLocale);
  const parts = key.split('-');
  for (let i = parts.length; i >= 1; i--) out.push(parts.slice(0, i).join('-'));
  out.push(localeKey(defaultLocale));
  return [...new Set(out.filter(Boolean))];
}

