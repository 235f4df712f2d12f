import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");

/** The tracked Markdown files (generated ones under ignored folders do not count). */
function markdownFiles(): string[] {
  return execFileSync("git", ["ls-files", "*.md"], { cwd: ROOT, encoding: "utf8" })
    .split("\n")
    .filter((file) => file !== "" && !file.startsWith("node_modules/"))
    .map((file) => join(ROOT, file));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, "")
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  for (const [, heading] of markdown.matchAll(/^#{1,6} +(.+)$/gm)) found.add(anchor(heading!));
  return found;
}

/** Relative link targets: `[text](target)`, `![alt](target)` and `src="target"`. */
function relativeLinks(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, "");
  const targets = [
    ...[...withoutCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!),
    ...[...withoutCode.matchAll(/\bsrc="([^"]+)"/g)].map((m) => m[1]!),
  ];
  return targets.filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Markdown files named in inline code, like `DESIGN.md` or `docs/api.md`. */
function mentionedMarkdown(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, "");
  return [...withoutCode.matchAll(/`([\w./-]+\.md)`/g)].map((m) => m[1]!);
}

describe("the docs", () => {
  const files = markdownFiles();

  it("has Markdown files to check", () => {
    expect(files.map((file) => relative(ROOT, file))).toEqual(
      expect.arrayContaining(["README.md", "docs/demo.md", "docs/api.md"]),
    );
  });

  it("has every relative link resolve to a file, and every #anchor to a heading", () => {
    const broken: string[] = [];
    for (const file of files) {
      const markdown = readFileSync(file, "utf8");
      for (const link of relativeLinks(markdown)) {
        const [path = "", hash] = link.split("#");
        const target = path === "" ? file : join(dirname(file), decodeURIComponent(path));
        if (!existsSync(target)) {
          broken.push(`${relative(ROOT, file)}: ${link} (no such file)`);
          continue;
        }
        if (hash !== undefined && target.endsWith(".md")) {
          if (!anchors(readFileSync(target, "utf8")).has(hash)) {
            broken.push(`${relative(ROOT, file)}: ${link} (no such heading)`);
          }
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it("names only Markdown files that exist (next to the doc, or from the project root)", () => {
    const missing: string[] = [];
    for (const file of files) {
      for (const name of mentionedMarkdown(readFileSync(file, "utf8"))) {
        if (!existsSync(join(dirname(file), name)) && !existsSync(join(ROOT, name))) {
          missing.push(`${relative(ROOT, file)}: ${name}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it("mentions every example folder somewhere", () => {
    const docs = files.map((file) => readFileSync(file, "utf8")).join("\n");
    const examples = execFileSync("git", ["ls-files", "examples"], { cwd: ROOT, encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map((file) => file.split("/").slice(0, 2).join("/"));
    const unmentioned = [...new Set(examples)].filter((folder) => !docs.includes(folder));
    expect(unmentioned).toEqual([]);
  });

  it("has no authoring leftovers (suggested wording, notes to the writer)", () => {
    const leftovers = files.filter((file) =>
      /^## For the README|Suggested wording/m.test(readFileSync(file, "utf8")),
    );
    expect(leftovers.map((file) => relative(ROOT, file))).toEqual([]);
  });
});
