//! Line numbers for problems found after parsing (two backends, a bad duration, an env entry
//! without a name): the YAML path a message names (`backend.command.dispatch_timeout`,
//! `backend.docker.environment[1].name`) is looked up in the file's text.
//!
//! The lookup follows block-style YAML, the style of hand-written config files: each path
//! segment is a `key:` more indented than its parent, a `[i]` index the i-th `- ` item of a
//! sequence. A path it cannot follow (flow style, anchors) has no line; the message stands alone.

/// The line of `path`, else of its nearest enclosing key that is in the file (a required
/// key that is missing is reported at its block).
pub fn line_of_or_parent(text: &str, path: &str) -> Option<usize> {
    let mut path = path;
    loop {
        if let Some(line) = line_of(text, path) {
            return Some(line);
        }
        path = &path[..path.rfind(['.', '['])?];
    }
}

/// The 1-based line of `path` in `text`, or `None` when it cannot be found.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // (first line index of the current block, indent of its parent key or -1 at the root)
    let mut start = 0usize;
    let mut parent_indent: isize = -1;
    let mut found = None;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.strip_suffix(']')?.parse::<usize>().ok()),
            None => (segment, None),
        };
        let (at, indent) = find_key(&lines, start, parent_indent, key)?;
        found = Some(at);
        start = at + 1;
        parent_indent = indent;
        if let Some(i) = index {
            let (item, item_indent) = find_item(&lines, start, parent_indent, i)?;
            found = Some(item);
            // A key on the item's own line (`- name: x`) is part of the item's block.
            start = item;
            parent_indent = item_indent;
        }
    }
    found.map(|i| i + 1)
}

/// The line index and indent of `key:` in the block that starts at `start` and holds lines
/// more indented than `parent_indent`. `- key:` counts, its indent being where `key` starts.
fn find_key(
    lines: &[&str],
    start: usize,
    parent_indent: isize,
    key: &str,
) -> Option<(usize, isize)> {
    for (i, line) in lines.iter().enumerate().skip(start) {
        let Some((indent, content)) = content_of(line) else {
            continue;
        };
        if indent <= parent_indent && i > start {
            return None;
        }
        let (indent, content) = match content.strip_prefix("- ") {
            Some(rest) => (indent + 2, rest.trim_start()),
            None => (indent, content),
        };
        if indent <= parent_indent {
            continue;
        }
        let name = content.split(':').next().unwrap_or("").trim();
        let name = name.trim_matches(|c| c == '"' || c == '\'');
        if name == key
            && content[name.len()..]
                .trim_start_matches(['"', '\''])
                .starts_with(':')
        {
            return Some((i, indent));
        }
    }
    None
}

/// The line index of the `index`-th `- ` item of the sequence below a key with `parent_indent`,
/// and the indent its content has.
fn find_item(
    lines: &[&str],
    start: usize,
    parent_indent: isize,
    index: usize,
) -> Option<(usize, isize)> {
    let mut seen = 0;
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let Some((indent, content)) = content_of(line) else {
            continue;
        };
        if indent < parent_indent || (indent == parent_indent && !content.starts_with('-')) {
            return None;
        }
        if content.starts_with("- ") || content == "-" {
            match item_indent {
                None => item_indent = Some(indent),
                Some(at) if at != indent => continue,
                Some(_) => {}
            }
            if seen == index {
                return Some((i, indent));
            }
            seen += 1;
        }
    }
    None
}

/// Indent and content of a line that holds YAML (not blank, not a comment).
fn content_of(line: &str) -> Option<(isize, &str)> {
    let content = line.trim_start();
    if content.is_empty() || content.starts_with('#') {
        return None;
    }
    let indent = isize::try_from(line.len() - content.len()).ok()?;
    Some((indent, content.trim_end()))
}

/// A piece of a config file that decodes on its own: one top-level key with its block, or
/// `backend:` with one backend block. `lines[i]` is the file's line of the piece's line `i + 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub lines: Vec<usize>,
}

impl Piece {
    fn push(&mut self, lines: &[&str], i: usize) {
        self.text.push_str(lines[i]);
        self.text.push('\n');
        self.lines.push(i + 1);
    }
}

/// Cuts block-style YAML into [`Piece`]s. Flow-style or unusual documents give fewer pieces;
/// the caller still has the whole file's first error.
pub fn pieces(text: &str) -> Vec<Piece> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i];
            !l.starts_with([' ', '\t', '#', '-', '.', '}', ']']) && !l.trim().is_empty()
        })
        .collect();
    let mut out = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let (key, rest) = lines[s].split_once(':').unwrap_or((lines[s], ""));
        let rest = rest.trim();
        if key.trim() != "backend" || !(rest.is_empty() || rest.starts_with('#')) {
            let mut piece = Piece::default();
            (s..end).for_each(|i| piece.push(&lines, i));
            out.push(piece);
            continue;
        }
        // One piece per backend block: the block keys are the least indented lines.
        let body: Vec<(usize, isize)> = (s + 1..end)
            .filter_map(|i| content_of(lines[i]).map(|(indent, _)| (i, indent)))
            .collect();
        let Some(indent) = body.iter().map(|b| b.1).min() else {
            continue;
        };
        let block_starts: Vec<usize> = body.iter().filter(|b| b.1 == indent).map(|b| b.0).collect();
        for (m, &bs) in block_starts.iter().enumerate() {
            let be = block_starts.get(m + 1).copied().unwrap_or(end);
            let mut piece = Piece::default();
            piece.push(&lines, s);
            (bs..be).for_each(|i| piece.push(&lines, i));
            out.push(piece);
        }
    }
    out
}

/// The YAML path a validation message starts with (`backend.docker.image_pull_policy must…`,
/// `invalid drain_timeout "x": …`), if it names one; "at most one backend" points at `backend`.
pub fn path_of_problem(problem: &str) -> Option<&str> {
    if problem.starts_with("at most one backend") {
        return Some("backend");
    }
    let rest = problem.strip_prefix("invalid ").unwrap_or(problem);
    let token = rest.split([' ', ':']).next()?;
    let top = token.split(['.', '[']).next()?;
    super::file::TOP_LEVEL_KEYS.contains(&top).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
worker_id: w
# a comment
backend:
  docker:
    volumes:
      - /a:/b
  command:
    dispatch_timeout: 5x
    environment:
      - name: A
        value: 1
      - value: 2
      -   name: \"C D\"
drain_timeout: later
";

    #[test]
    fn paths_are_found_in_block_yaml() {
        assert_eq!(line_of(TEXT, "worker_id"), Some(1));
        assert_eq!(line_of(TEXT, "backend"), Some(3));
        assert_eq!(line_of(TEXT, "backend.docker"), Some(4));
        assert_eq!(line_of(TEXT, "backend.command.dispatch_timeout"), Some(8));
        assert_eq!(line_of(TEXT, "backend.command.environment[1]"), Some(12));
        assert_eq!(
            line_of(TEXT, "backend.command.environment[0].name"),
            Some(10)
        );
        assert_eq!(
            line_of(TEXT, "backend.command.environment[2].name"),
            Some(13)
        );
        assert_eq!(line_of(TEXT, "drain_timeout"), Some(14));
        // Not there, or not in this block.
        assert_eq!(line_of(TEXT, "backend.direct"), None);
        assert_eq!(line_of(TEXT, "backend.docker.dispatch_timeout"), None);
        assert_eq!(line_of(TEXT, "backend.command.environment[3]"), None);
        // A missing key is placed at its block.
        assert_eq!(
            line_of_or_parent(TEXT, "backend.command.dispatch_command"),
            Some(7)
        );
        assert_eq!(line_of_or_parent(TEXT, "nothing.here"), None);
    }

    #[test]
    fn pieces_are_top_level_keys_and_backend_blocks() {
        let p = pieces(TEXT);
        let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts[0], "worker_id: w\n# a comment\n");
        assert_eq!(
            texts[1],
            "backend:\n  docker:\n    volumes:\n      - /a:/b\n"
        );
        assert!(texts[2].starts_with("backend:\n  command:\n    dispatch_timeout: 5x\n"));
        assert_eq!(texts[3], "drain_timeout: later\n");
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].lines, [3, 4, 5, 6]);
        assert_eq!(p[2].lines[..3], [3, 7, 8]);
    }

    #[test]
    fn problems_name_their_path() {
        assert_eq!(
            path_of_problem("backend.command.dispatch_command is required"),
            Some("backend.command.dispatch_command")
        );
        assert_eq!(
            path_of_problem("invalid drain_timeout \"x\": bad"),
            Some("drain_timeout")
        );
        assert_eq!(
            path_of_problem("metrics_addr: no port"),
            Some("metrics_addr")
        );
        assert_eq!(
            path_of_problem("at most one backend may be configured (found a, b)"),
            Some("backend")
        );
        assert_eq!(path_of_problem("something else entirely"), None);
    }
}
