// Test oracle: how Confluence Cloud's editor reads pasted wiki markup, through Atlassian's own
// converter (@atlaskit/editor-wikimarkup-transformer). Used by tests/cloud_wiki.py.
//
// Protocol: one JSON string (the markup) per line on stdin; for each, one JSON line on stdout:
//   {"blocks": [{"type": "table", "rows": [[cell, ...], ...]} | {"type": T, "text": ...}]}
// where a cell is {"header": bool, "text": what the reader sees (a hard break as "\n", a status
// lozenge as its title), "marks": formatting on the text ("link:<href>" for a link; a header
// cell's own bold is left out), "nodes": every node that is not plain text, a paragraph or a
// hard break ("status:<title>:<colour>", "emoji", "codeBlock", ...)}; or {"error": message}.
'use strict';
const readline = require('readline');
const { WikiMarkupTransformer } = require('@atlaskit/editor-wikimarkup-transformer');
const { defaultSchema } = require('@atlaskit/adf-schema/schema-default');

const transformer = new WikiMarkupTransformer(defaultSchema);
const PLAIN = new Set(['paragraph', 'text', 'hardBreak', 'tableCell', 'tableHeader']);

function describe(node, header) {
  const text = [];
  const marks = [];
  const nodes = [];
  let paragraphs = 0;
  node.descendants((n) => {
    if (n.type.name === 'paragraph') {
      if (paragraphs++) text.push('\n\n');
    } else if (n.isText) {
      text.push(n.text);
      for (const m of n.marks) {
        if (header && m.type.name === 'strong') continue;
        marks.push(m.type.name === 'link' ? `link:${m.attrs.href}` : m.type.name);
      }
    } else if (n.type.name === 'hardBreak') {
      text.push('\n');
    } else if (n.type.name === 'status') {
      text.push(n.attrs.text);
      nodes.push(`status:${n.attrs.text}:${n.attrs.color}`);
    } else if (!PLAIN.has(n.type.name)) {
      nodes.push(n.type.name);
    }
    return true;
  });
  return { header, text: text.join(''), marks, nodes };
}

function read(markup) {
  const blocks = [];
  transformer.parse(markup).forEach((block) => {
    if (block.type.name !== 'table') {
      blocks.push({ type: block.type.name, ...describe(block, false) });
      return;
    }
    const rows = [];
    block.forEach((row) => {
      const cells = [];
      row.forEach((cell) => cells.push(describe(cell, cell.type.name === 'tableHeader')));
      rows.push(cells);
    });
    blocks.push({ type: 'table', rows });
  });
  return { blocks };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let answer;
  try {
    answer = read(JSON.parse(line));
  } catch (err) {
    answer = { error: String(err && err.stack || err) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
