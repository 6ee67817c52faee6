// Markdown (a small subset) to HTML, from a local file only.
const fs = require("fs");
const src = fs.readFileSync(process.argv[2] || "assets/example.md", "utf8");
const html = src
  .split(/\n\n+/)
  .map((block) => {
    const h = block.match(/^(#{1,6}) (.*)/);
    const inline = (s) => s.replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>").replace(/\*(.+?)\*/g, "<em>$1</em>");
    return h ? `<h${h[1].length}>${inline(h[2])}</h${h[1].length}>` : `<p>${inline(block.trim())}</p>`;
  })
  .join("\n");
process.stdout.write(html + "\n");
