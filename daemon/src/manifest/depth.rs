//! A nesting-depth check that runs before the YAML parser.
//!
//! The parser's time grows with the square of the nesting depth (70,000 levels of `[` take
//! seconds; a 1 MiB body of them, minutes), and it would spend that time before any rule of
//! ours could refuse the document. So one linear pass over the text measures how deep the
//! document nests, and anything deeper than a manifest ever needs is refused first.
//!
//! The scan is conservative rather than a YAML parser: it never under-counts a flow
//! collection (`[`, `{`) and counts block levels by indentation and `- ` markers. Brackets
//! inside quoted scalars, comments and block scalars (`|`, `>`) are not structure and are
//! skipped.

/// Deeper than any manifest of the Anbox reference (which nests four levels at most),
/// shallow enough that the parser's cost at this depth is negligible.
pub const MAX_DEPTH: usize = 32;

/// The 1-based line where the document first nests deeper than [`MAX_DEPTH`].
pub fn too_deep(text: &str) -> Option<usize> {
    let mut scan = Scan::default();
    for (index, line) in text.lines().enumerate() {
        if scan.line(line).is_some_and(|depth| depth > MAX_DEPTH) {
            return Some(index + 1);
        }
    }
    None
}

#[derive(Default)]
struct Scan {
    /// Indentation of each open block level.
    blocks: Vec<usize>,
    flow: usize,
    quote: Option<u8>,
    /// Inside a block scalar whose parent line was indented this much.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Reads one line; answers the deepest nesting seen on it.
    fn line(&mut self, line: &str) -> Option<usize> {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let rest = &bytes[indent..];
        if let Some(parent) = self.block_scalar {
            if rest.is_empty() || indent > parent {
                return None;
            }
            self.block_scalar = None;
        }
        let mut deepest = 0;
        let mut i = 0;
        if self.flow == 0 && self.quote.is_none() {
            if rest.is_empty() || rest[0] == b'#' {
                return None;
            }
            while self.blocks.last().is_some_and(|&open| open >= indent) {
                self.blocks.pop();
            }
            self.blocks.push(indent);
            // `- - - x` opens one sequence level per marker on a single line.
            let mut dashes = 0;
            while i + 1 < rest.len() && rest[i] == b'-' && rest[i + 1] == b' ' {
                dashes += 1;
                i += 2;
                while i < rest.len() && rest[i] == b' ' {
                    i += 1;
                }
            }
            deepest = self.blocks.len() + dashes;
        }
        // Whether the next character starts a value, where `[` and `{` open collections.
        let mut value_start = true;
        let mut last = 0u8;
        while i < rest.len() {
            let b = rest[i];
            match self.quote {
                Some(b'"') => match b {
                    b'\\' => i += 1,
                    b'"' => self.quote = None,
                    _ => {}
                },
                Some(_) => {
                    if b == b'\'' {
                        if rest.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            self.quote = None;
                        }
                    }
                }
                None => match b {
                    b'#' if last == 0 || last == b' ' || last == b'\t' => break,
                    b'"' | b'\'' if value_start => self.quote = Some(b),
                    b'[' | b'{' if value_start || self.flow > 0 => {
                        self.flow += 1;
                        deepest = deepest.max(self.blocks.len() + self.flow);
                        if deepest > MAX_DEPTH {
                            break;
                        }
                    }
                    b']' | b'}' if self.flow > 0 => self.flow -= 1,
                    b'|' | b'>' if value_start && self.flow == 0 => {
                        self.block_scalar = Some(indent);
                        break;
                    }
                    _ => {}
                },
            }
            if self.quote.is_none() && !matches!(b, b' ' | b'\t') {
                let blank_next = rest.get(i + 1).is_none_or(|n| matches!(n, b' ' | b'\t'));
                value_start = match b {
                    b':' => blank_next || self.flow > 0,
                    b'-' | b'?' => blank_next,
                    b',' | b'[' | b'{' => self.flow > 0,
                    _ => false,
                };
            }
            last = b;
            i += 1;
        }
        Some(deepest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        let mut scan = Scan::default();
        text.lines().filter_map(|l| scan.line(l)).max().unwrap_or(0)
    }

    #[test]
    fn manifests_of_the_reference_are_shallow() {
        let text = "name: candy\nwatchdog:\n  disabled: false\n  allowed-packages:\n    - com.android.settings\nservices:\n  - name: adb\n    port: 5559\n    protocols: [tcp]\n";
        assert!(depth(text) <= 4, "{}", depth(text));
        assert_eq!(too_deep(text), None);
    }

    #[test]
    fn flow_and_block_nesting_are_both_counted() {
        let flow = format!("name: x\nextra: {}{}\n", "[".repeat(40), "]".repeat(40));
        assert_eq!(too_deep(&flow), Some(2));
        let mut block = String::from("name: x\n");
        for level in 0..40 {
            block.push_str(&" ".repeat(level));
            block.push_str("k:\n");
        }
        assert!(too_deep(&block).is_some());
        let dashes = format!("name: x\nl:\n{}x\n", "- ".repeat(40));
        assert!(too_deep(&dashes).is_some());
    }

    #[test]
    fn brackets_that_are_not_structure_do_not_count() {
        let many = "[".repeat(100);
        let quoted = format!("name: x\na: \"{many}\"\nb: '{many}'\nc: plain{many}\n# {many}\n");
        assert_eq!(too_deep(&quoted), None);
        let scalar = format!("name: x\nscript: |\n  {many}\n  {many}\nnext: 1\n");
        assert_eq!(too_deep(&scalar), None);
        let multiline_quote = format!("name: x\na: \"first\n  {many}\"\n");
        assert_eq!(too_deep(&multiline_quote), None);
    }

    #[test]
    fn the_scan_is_linear() {
        let text = format!("x: [{}]\n", "[a, 'b]', \"c[\"],".repeat(1 << 16));
        let start = std::time::Instant::now();
        assert_eq!(too_deep(&text), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
