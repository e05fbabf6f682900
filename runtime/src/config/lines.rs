//! Finding where a key sits in the YAML text, so that an error names the line to fix.

/// The 1-based line of `key:` at or after line `from` (1-based; 0 = from the top, top level only).
pub(super) fn find_key_line(text: &str, from: usize, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let t = line.trim_start().trim_start_matches("- ");
        if from == 0 && line.starts_with(' ') {
            continue;
        }
        if t.starts_with(&needle) {
            return Some(i + 1);
        }
        // Stop at the next list item of the mailboxes sequence.
        if from > 0 && i + 1 > from && line.trim_start().starts_with("- ") && is_item_start(line) {
            return None;
        }
    }
    None
}

fn is_item_start(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("- ") && t[2..].contains(':')
}

/// The 1-based line where the `index`th entry of `mailboxes:` starts.
pub(super) fn mailbox_line(text: &str, index: usize) -> Option<usize> {
    item_line(text, "mailboxes", index)
}

/// The 1-based line where each entry of `mailboxes:` starts, in one pass over the text: per
/// mailbox, a search from the top would make loading quadratic in the number of mailboxes.
pub(super) fn mailbox_lines(text: &str) -> Vec<usize> {
    item_lines_upto(text, "mailboxes", None)
}

/// The 1-based line, within the `index`th entry of the top-level list `section`, that holds
/// `word` (a key or a value an error names); the entry's first line when none does.
pub(super) fn word_line_in_item(
    text: &str,
    section: &str,
    index: usize,
    word: Option<&str>,
) -> Option<usize> {
    let starts = item_lines_upto(text, section, Some(index + 1));
    let start = *starts.get(index)?;
    let end = starts.get(index + 1).copied();
    let Some(word) = word else {
        return Some(start);
    };
    text.lines()
        .enumerate()
        .skip(start - 1)
        .take_while(|(i, _)| end.is_none_or(|e| i + 1 < e))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{word}:")) || t.trim() == word || l.contains(word)
        })
        .map(|(i, _)| i + 1)
        .or(Some(start))
}

/// The 1-based line where the `index`th entry of the top-level list `section` starts.
pub(super) fn item_line(text: &str, section: &str, index: usize) -> Option<usize> {
    item_lines_upto(text, section, Some(index))
        .get(index)
        .copied()
}

/// The 1-based lines where the entries of the top-level list `section` start, up to the
/// `last`th (0-based) or all of them, in one pass over the text.
fn item_lines_upto(text: &str, section: &str, last: Option<usize>) -> Vec<usize> {
    let header = format!("{section}:");
    let mut starts = Vec::new();
    let mut in_list = false;
    let mut seen = 0;
    let mut indent = None;
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with(' ') && !line.starts_with('-') && !line.trim().is_empty() {
            in_list = line.starts_with(&header);
            continue;
        }
        if !in_list {
            continue;
        }
        let ind = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("- ") && indent.is_none_or(|x| x == ind) {
            indent = Some(ind);
            starts.push(i + 1);
            if last == Some(seen) {
                break;
            }
            seen += 1;
        }
    }
    starts
}
