//! Builders of the SQL text that depends on a count: `IN (...)` lists and the `VALUES` of
//! multi-row `INSERT`s. Values are always bound, never written into the text.

/// `$from+1,...,$from+n`: the placeholders of an `IN (...)` list.
pub fn in_list(from: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push('$');
        out.push_str(&(from + i + 1).to_string());
    }
    out
}

/// A column of a multi-row `VALUES`: a parameter bound once for all rows (`$n`, from 1), or
/// the row's own `n`-th parameter (from 0).
#[derive(Debug, Clone, Copy)]
pub enum Col {
    /// `$n`, the same for every row.
    Shared(usize),
    /// The row's `n`-th bound value.
    Row(usize),
}

/// `(..),(..),...` for `rows` rows of `cols`. Shared parameters come first (`shared` of
/// them), then each row's `per_row` values in order.
pub fn multi_row_values(rows: usize, shared: usize, per_row: usize, cols: &[Col]) -> String {
    let mut out = String::with_capacity(rows * cols.len() * 6);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let n = match *c {
                Col::Shared(n) => n,
                Col::Row(n) => shared + r * per_row + n + 1,
            };
            out.push('$');
            out.push_str(&n.to_string());
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_rows_number_their_parameters() {
        assert_eq!(in_list(2, 3), "$3,$4,$5");
        assert_eq!(in_list(0, 0), "");
        let v = multi_row_values(
            2,
            2,
            2,
            &[Col::Row(0), Col::Shared(1), Col::Row(1), Col::Shared(2)],
        );
        assert_eq!(v, "($3, $1, $4, $2),($5, $1, $6, $2)");
    }
}
