// Read RSS documents with rss-parser and print what it gives of each, as JSON:
//   node read_feed.js FILE...   ->   [{"title": ..., "items": [...]}, ...]
// Used by tests/test_rss_output.py to compare with feedparser's reading.
"use strict";
const fs = require("fs");
const Parser = require("rss-parser");

const parser = new Parser({ customFields: { item: [["dc:creator", "creator"]] } });

async function main() {
  const feeds = [];
  for (const path of process.argv.slice(2)) {
    const feed = await parser.parseString(fs.readFileSync(path, "utf8"));
    feeds.push({
      title: feed.title,
      link: feed.link,
      description: feed.description,
      lastBuildDate: feed.lastBuildDate,
      items: feed.items.map((item) => ({
        title: item.title,
        link: item.link,
        guid: item.guid,
        pubDate: item.pubDate,
        isoDate: item.isoDate,
        content: item.content,
        contentEncoded: item["content:encoded"],
        creator: item.creator,
        categories: item.categories,
        enclosure: item.enclosure,
      })),
    });
  }
  process.stdout.write(JSON.stringify(feeds));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(1);
});
