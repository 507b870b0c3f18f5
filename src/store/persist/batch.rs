//! How rows are cut into statements: each statement carries at most so many
//! rows and so many bytes, so one mirror with thousands of large sources
//! never builds one huge statement (client memory, server memory, and a
//! statement that cannot finish within its deadline).

use crate::store::rows::Row;

/// Rows per statement.
pub(crate) const MAX_ROWS: usize = 500;
/// Bytes of row content per statement (a row larger than this, which a
/// 1 MiB ConfigMap cannot be, still goes alone).
pub(crate) const MAX_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub rows: usize,
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rows: MAX_ROWS,
            bytes: MAX_BYTES,
        }
    }
}

/// `rows` in order, as consecutive slices within `limits` (every slice
/// holds at least one row).
pub(crate) fn batches(rows: &[Row], limits: Limits) -> impl Iterator<Item = &[Row]> {
    let sizes: Vec<usize> = rows.iter().map(Row::size).collect();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let mut end = start + 1;
        let mut bytes = sizes[start];
        while end < rows.len()
            && end - start < limits.rows.max(1)
            && bytes + sizes[end] <= limits.bytes
        {
            bytes += sizes[end];
            end += 1;
        }
        let batch = &rows[start..end];
        start = end;
        Some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SourceConfigMap;
    use crate::store::rows::row_of;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn row(name: &str, bytes: usize) -> Row {
        row_of(&SourceConfigMap::from_configmap(&ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("src".into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), "x".repeat(bytes))].into()),
            ..Default::default()
        }))
    }

    fn lengths(rows: &[Row], limits: Limits) -> Vec<usize> {
        batches(rows, limits).map(<[Row]>::len).collect()
    }

    #[test]
    fn rows_are_cut_by_count() {
        let rows: Vec<Row> = (0..1_001).map(|i| row(&format!("r{i}"), 10)).collect();
        assert_eq!(lengths(&rows, Limits::default()), [500, 500, 1]);
        let limits = Limits {
            rows: 500,
            bytes: usize::MAX,
        };
        assert_eq!(lengths(&rows[..500], limits), [500]);
        assert_eq!(lengths(&rows[..501], limits), [500, 1]);
        assert!(lengths(&[], limits).is_empty());
    }

    #[test]
    fn rows_are_cut_by_bytes_and_a_huge_row_goes_alone() {
        let rows: Vec<Row> = (0..5).map(|i| row(&format!("r{i}"), 1_000)).collect();
        let size = rows[0].size();
        let limits = |bytes| Limits { rows: 500, bytes };
        // Exactly two rows fit; a third byte more does not make three.
        assert_eq!(lengths(&rows, limits(2 * size)), [2, 2, 1]);
        assert_eq!(lengths(&rows, limits(2 * size - 1)), [1, 1, 1, 1, 1]);
        assert_eq!(lengths(&rows, limits(10)), [1, 1, 1, 1, 1]);
        let mixed = vec![row("s", 10), row("big", 5_000), row("t", 10), row("u", 10)];
        let small = row("s", 10).size();
        assert_eq!(lengths(&mixed, limits(3 * small)), [1, 1, 2]);
    }

    #[test]
    fn one_mebibyte_rows_go_seven_to_a_statement() {
        let one = row("one", 1 << 20);
        let rows = vec![one; 20];
        assert_eq!(lengths(&rows, Limits::default()), [7, 7, 6]);
        let total: usize = batches(&rows, Limits::default()).map(<[Row]>::len).sum();
        assert_eq!(total, 20);
    }
}
