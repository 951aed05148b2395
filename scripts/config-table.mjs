// Regenerates the README's configuration table from .env.example (the one place variables are documented).
import { readFileSync, writeFileSync } from 'node:fs';

const lines = readFileSync('.env.example', 'utf8').split('\n');
const rows = [];
let section = '';
let comment = [];
for (const line of lines) {
  const heading = /^# --- (.+?) -+$/.exec(line);
  if (heading) {
    section = heading[1];
    comment = [];
    continue;
  }
  const v = /^([A-Z][A-Z0-9_]+)=(.*)$/.exec(line);
  if (v) {
    rows.push(
      `| \`${v[1]}\` | ${v[2] ? `\`${v[2]}\`` : '—'} | ${section} | ${comment.join(' ').replaceAll('|', '\\|')} |`,
    );
    comment = [];
  } else if (line.startsWith('# ') && section) {
    comment.push(line.slice(2));
  } else {
    comment = [];
  }
}
const table = ['| variable | default | area | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
const readme = readFileSync('README.md', 'utf8');
const start = '<!-- config:start -->';
const end = '<!-- config:end -->';
const next = readme.includes(start)
  ? readme.replace(new RegExp(`${start}[\\s\\S]*?${end}`), `${start}\n${table}\n${end}`)
  : readme.replace('CONFIG_TABLE', `${start}\n${table}\n${end}`);
writeFileSync('README.md', next);
console.log(`config table: ${rows.length} variables`);
