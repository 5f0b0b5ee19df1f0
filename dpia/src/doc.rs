//! A small document model rendered to Markdown and to a standalone HTML page, so that each
//! artifact is written once and both renderings say the same thing.

/// A block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 1..=4.
    Heading(u8, String),
    /// A paragraph.
    Para(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table: header cells, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// An image (path relative to the document, alternative text).
    Image(String, String),
}

/// A document: a title and its blocks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    /// Title (also the first heading).
    pub title: String,
    /// Content.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// A new document.
    pub fn new(title: impl Into<String>) -> Doc {
        Doc { title: title.into(), blocks: Vec::new() }
    }

    /// Adds a heading.
    pub fn h(&mut self, level: u8, text: impl Into<String>) -> &mut Doc {
        self.blocks.push(Block::Heading(level, text.into()));
        self
    }

    /// Adds a paragraph.
    pub fn p(&mut self, text: impl Into<String>) -> &mut Doc {
        self.blocks.push(Block::Para(text.into()));
        self
    }

    /// Adds a list.
    pub fn list(&mut self, items: Vec<String>) -> &mut Doc {
        self.blocks.push(Block::List(items));
        self
    }

    /// Adds a table.
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) -> &mut Doc {
        self.blocks.push(Block::Table(header.iter().map(|s| (*s).to_owned()).collect(), rows));
        self
    }

    /// Adds an image.
    pub fn image(&mut self, src: &str, alt: &str) -> &mut Doc {
        self.blocks.push(Block::Image(src.into(), alt.into()));
        self
    }

    /// Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n", md(&self.title));
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Heading(level, text) => {
                    out.push_str(&"#".repeat(usize::from((*level).clamp(1, 6))));
                    out.push(' ');
                    out.push_str(&md(text));
                    out.push('\n');
                }
                Block::Para(text) => {
                    out.push_str(&md(text));
                    out.push('\n');
                }
                Block::List(items) => {
                    for item in items {
                        out.push_str("- ");
                        out.push_str(&md(item));
                        out.push('\n');
                    }
                }
                Block::Table(header, rows) => {
                    let row = |cells: &[String]| {
                        format!("| {} |\n", cells.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "))
                    };
                    out.push_str(&row(header));
                    out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
                    for r in rows {
                        out.push_str(&row(r));
                    }
                }
                Block::Image(src, alt) => out.push_str(&format!("![{}]({src})\n", md(alt))),
            }
        }
        out
    }

    /// A standalone HTML5 page.
    pub fn html(&self, lang: &str) -> String {
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
            esc(&self.title),
            esc(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let level = (*level).clamp(2, 6);
                    out.push_str(&format!("<h{level}>{}</h{level}>\n", esc(text)));
                }
                Block::Para(text) => out.push_str(&format!("<p>{}</p>\n", esc(text))),
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        out.push_str(&format!("<li>{}</li>\n", esc(item)));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(header, rows) => {
                    out.push_str("<table>\n<thead><tr>");
                    for h in header {
                        out.push_str(&format!("<th scope=\"col\">{}</th>", esc(h)));
                    }
                    out.push_str("</tr></thead>\n<tbody>\n");
                    for r in rows {
                        out.push_str("<tr>");
                        for c in r {
                            out.push_str(&format!("<td>{}</td>", esc(c)));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody>\n</table>\n");
                }
                Block::Image(src, alt) => {
                    out.push_str(&format!("<p><img src=\"{}\" alt=\"{}\"></p>\n", esc(src), esc(alt)));
                }
            }
        }
        out.push_str("</main>\n</body>\n</html>\n");
        out
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}\
main{max-width:64rem;margin:0 auto;padding:1rem 1.5rem 3rem;line-height:1.5}\
h1{font-size:1.8rem}h2{margin-top:2rem;border-bottom:1px solid #ccd}\
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.92rem}\
th,td{border:1px solid #ccd;padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{background:#eef1f5}img{max-width:100%}";

/// Escapes text for HTML (and SVG) content and attribute values; control characters, which
/// XML forbids, become spaces.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes Markdown syntax that would change the meaning of plain text: inline markers
/// anywhere, block markers (quote, heading, list, fence, ordered-list number) at the start,
/// and line breaks and leading indentation (which would start new blocks).
fn md(text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim_start();
    let mut out = String::with_capacity(text.len());
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let ordered = digits > 0 && text[digits..].starts_with(['.', ')']);
    for (i, c) in text.chars().enumerate() {
        let block_marker = (i == 0 && matches!(c, '>' | '#' | '-' | '+' | '=')) || (ordered && i == digits);
        if block_marker || matches!(c, '\\' | '*' | '_' | '[' | ']' | '<' | '`' | '|' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_renderings_escape_what_they_must() {
        let mut doc = Doc::new("A <title> & more");
        doc.p("a | b * c").table(&["x|y"], vec![vec!["<b>".into()]]);
        let html = doc.html("en");
        assert!(html.contains("<h1>A &lt;title&gt; &amp; more</h1>"));
        assert!(html.contains("<td>&lt;b&gt;</td>"));
        let md = doc.markdown();
        assert!(md.contains("a \\| b \\* c"));
        assert!(md.contains("| x\\|y |"));
        let mut blocks = Doc::new("t");
        blocks.p("~~~ fence").p("1. item").p("    code\r\nnext").p("x\u{1}y");
        let md = blocks.markdown();
        assert!(md.contains("\\~\\~\\~ fence"), "{md}");
        assert!(md.contains("1\\. item"), "{md}");
        assert!(md.contains("\ncode  next\n"), "{md}");
        assert!(blocks.html("en").contains("x y"));
    }
}
