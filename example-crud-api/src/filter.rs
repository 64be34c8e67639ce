//! The filter language of `POST /users/filter` and `/users/filter-paginated`, and page-size rules.
//!
//! A [`UserFilter`] is what clients send; [`UserFilter::validate`] turns it into a
//! [`ValidFilter`], whose operands are typed and normalized (defaults filled in), so that the
//! service layer cannot be handed an invalid filter and equal filters hash to the same cache key.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::extension::postgres;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition as SqlCondition, DbBackend, EntityTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::entities::user;
use crate::error::Error;

/// Page size when none is given.
pub const DEFAULT_LIMIT: u64 = 100;
/// Largest page size accepted.
pub const MAX_LIMIT: u64 = 1000;
/// Largest `skip` accepted. sea-query-sqlx binds an offset as an `i64` and panics above
/// `i64::MAX`; and a database walks the skipped rows, so a huge offset is work for nothing.
pub const MAX_SKIP: u64 = 1_000_000;
/// Most conditions (and most values of one `in`) a filter may have.
const MAX_CONDITIONS: usize = 100;
const MAX_IN_VALUES: usize = 1000;
/// Most values one filter may compare with in all: every item of every `in` list plus one per
/// other condition (`contains` and the comparisons; a null test binds none). Each is a bind
/// parameter of the statement, and databases cap those (SQLite at 32,766, PostgreSQL at
/// 65,535); below that, a large statement is still a cheap way to load the database.
pub const MAX_FILTER_VALUES: usize = 1000;

/// Checks a requested `skip` (`0..=1_000_000`, default 0).
///
/// # Errors
/// 422 naming `skip` when above [`MAX_SKIP`].
pub fn page_skip(skip: Option<u64>) -> Result<u64, Error> {
    match skip.unwrap_or(0) {
        n @ 0..=MAX_SKIP => Ok(n),
        n => Err(Error::Invalid(format!(
            "`skip` must be at most {MAX_SKIP}, got {n}"
        ))),
    }
}

/// Checks a requested page size (`1..=1000`, default 100).
///
/// # Errors
/// 422 naming `limit` when out of range.
pub fn page_limit(limit: Option<u64>) -> Result<u64, Error> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(Error::Invalid(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, got {n}"
        ))),
    }
}

/// A filter as clients send it; every part is optional.
///
/// ```json
/// {"conditions": [{"field": "age", "op": "gte", "value": 18}],
///  "order_by": [{"field": "name", "direction": "desc"}], "skip": 0, "limit": 50}
/// ```
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "conditions": [{"field": "age", "op": "gte", "value": 18}],
    "order_by": [{"field": "name", "direction": "desc"}],
    "skip": 0,
    "limit": 50
}))]
pub struct UserFilter {
    /// All must hold (AND). At most 100, comparing with at most 1,000 values in all (each `in`
    /// item and each other condition's operand count one).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub conditions: Vec<Condition>,
    /// Sort keys, most significant first; `id` ascending always breaks ties.
    #[serde(default)]
    pub order_by: Vec<OrderBy>,
    /// Rows to skip (default 0, at most 1,000,000).
    #[schema(maximum = 1_000_000)]
    pub skip: Option<u64>,
    /// Page size (default 100, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// One condition: `field op value`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The column tested.
    pub field: Field,
    /// The comparison. `contains` ignores case: Unicode case on PostgreSQL, ASCII case only on
    /// SQLite.
    pub op: Op,
    /// The operand: a value of the field's type; a list for `in` (at most 1,000 values); `null`
    /// (with `eq`/`ne`) for the nullable `age`.
    pub value: Value,
}

/// One sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    /// The column sorted on.
    pub field: Field,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub direction: Direction,
}

/// The user fields a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `id` (integer).
    Id,
    /// `name` (text).
    Name,
    /// `email` (text).
    Email,
    /// `age` (integer or null).
    Age,
    /// `is_active` (boolean).
    IsActive,
    /// `created_at` (RFC 3339 timestamp).
    CreatedAt,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal (`null`: is null).
    Eq,
    /// Not equal (`null`: is not null). Like SQL, rows where the field is null never match.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Substring, ignoring case, text fields only. PostgreSQL ignores Unicode case (`émile`
    /// finds `Émile`); SQLite only ASCII case (`ÉMILE` finds `Émile`, `émile` does not).
    Contains,
    /// Equal to one of a list.
    In,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Ascending.
    #[default]
    Asc,
    /// Descending.
    Desc,
}

/// What values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Boolean,
    Timestamp,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Name => "name",
            Self::Email => "email",
            Self::Age => "age",
            Self::IsActive => "is_active",
            Self::CreatedAt => "created_at",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Id | Self::Age => Kind::Integer,
            Self::Name | Self::Email => Kind::Text,
            Self::IsActive => Kind::Boolean,
            Self::CreatedAt => Kind::Timestamp,
        }
    }

    fn nullable(self) -> bool {
        self == Self::Age
    }

    fn column(self) -> user::Column {
        match self {
            Self::Id => user::Column::Id,
            Self::Name => user::Column::Name,
            Self::Email => user::Column::Email,
            Self::Age => user::Column::Age,
            Self::IsActive => user::Column::IsActive,
            Self::CreatedAt => user::Column::CreatedAt,
        }
    }
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Self::Integer => "an integer",
            Self::Text => "a string",
            Self::Boolean => "a boolean",
            Self::Timestamp => "an RFC 3339 timestamp string",
        }
    }
}

/// A validated, normalized filter: build it with [`UserFilter::validate`]. Serializes to its
/// canonical form, which `#[cached]` hashes into the cache key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidFilter {
    conditions: Vec<Check>,
    order_by: Vec<OrderBy>,
    skip: u64,
    limit: u64,
}

/// A condition whose operand has been checked against its field and operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Check {
    Compare {
        field: Field,
        cmp: Cmp,
        value: Scalar,
    },
    IsNull {
        field: Field,
        negated: bool,
    },
    Contains {
        field: Field,
        text: String,
    },
    In {
        field: Field,
        values: Vec<Scalar>,
    },
}

/// The operators that compare with one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A typed operand.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scalar {
    Integer(i64),
    Text(String),
    Boolean(bool),
    Timestamp(DateTime<Utc>),
}

impl From<&Scalar> for sea_orm::Value {
    fn from(scalar: &Scalar) -> Self {
        match scalar {
            Scalar::Integer(n) => (*n).into(),
            Scalar::Text(s) => s.clone().into(),
            Scalar::Boolean(b) => (*b).into(),
            Scalar::Timestamp(t) => (*t).into(),
        }
    }
}

impl UserFilter {
    /// Checks every condition's operand against its field and operator, the number of values
    /// the filter compares with, and the page bounds.
    ///
    /// # Errors
    /// 422 naming the condition (`conditions[1]`), the field and what was expected; or the
    /// bound exceeded ([`MAX_FILTER_VALUES`], [`MAX_SKIP`], [`MAX_LIMIT`]).
    pub fn validate(self) -> Result<ValidFilter, Error> {
        if self.conditions.len() > MAX_CONDITIONS {
            return Err(Error::Invalid(format!(
                "at most {MAX_CONDITIONS} `conditions` are allowed"
            )));
        }
        let conditions: Vec<Check> = self
            .conditions
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                c.check()
                    .map_err(|e| Error::Invalid(format!("conditions[{i}]: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let values: usize = conditions.iter().map(Check::values).sum();
        if values > MAX_FILTER_VALUES {
            return Err(Error::Invalid(format!(
                "a filter may compare with at most {MAX_FILTER_VALUES} values in all (each `in` \
                 item and each other condition's operand count one), got {values}"
            )));
        }
        Ok(ValidFilter {
            conditions,
            order_by: self.order_by,
            skip: page_skip(self.skip)?,
            limit: page_limit(self.limit)?,
        })
    }
}

impl Condition {
    fn check(self) -> Result<Check, String> {
        let Self { field, op, value } = self;
        let name = field.name();
        let cmp = match op {
            Op::Eq => Cmp::Eq,
            Op::Ne => Cmp::Ne,
            Op::Gt => Cmp::Gt,
            Op::Gte => Cmp::Gte,
            Op::Lt => Cmp::Lt,
            Op::Lte => Cmp::Lte,
            Op::Contains => {
                return match (field.kind(), value) {
                    (Kind::Text, Value::String(text)) => Ok(Check::Contains { field, text }),
                    (Kind::Text, other) => Err(format!(
                        "`contains` on `{name}` expects a string, got {}",
                        describe(&other)
                    )),
                    _ => Err(format!(
                        "`contains` applies to the text fields `name` and `email`, not `{name}`"
                    )),
                };
            }
            Op::In => {
                return match value {
                    Value::Array(items) if items.len() <= MAX_IN_VALUES => Ok(Check::In {
                        field,
                        values: items
                            .iter()
                            .map(|item| scalar(field, item))
                            .collect::<Result<_, _>>()?,
                    }),
                    Value::Array(_) => Err(format!("`in` takes at most {MAX_IN_VALUES} values")),
                    other => Err(format!(
                        "`in` expects a list of values for `{name}`, got {}",
                        describe(&other)
                    )),
                };
            }
        };
        if matches!(value, Value::Null) {
            return match cmp {
                Cmp::Eq | Cmp::Ne if field.nullable() => Ok(Check::IsNull {
                    field,
                    negated: cmp == Cmp::Ne,
                }),
                Cmp::Eq | Cmp::Ne => {
                    Err(format!("`{name}` is never null; `value` must not be null"))
                }
                _ => Err(format!("`{}` needs a value, not null", op_name(op))),
            };
        }
        if field.kind() == Kind::Boolean && !matches!(cmp, Cmp::Eq | Cmp::Ne) {
            return Err(format!(
                "`{}` does not apply to the boolean field `{name}`; use `eq` or `ne`",
                op_name(op)
            ));
        }
        Ok(Check::Compare {
            field,
            cmp,
            value: scalar(field, &value)?,
        })
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "eq",
        Op::Ne => "ne",
        Op::Gt => "gt",
        Op::Gte => "gte",
        Op::Lt => "lt",
        Op::Lte => "lte",
        Op::Contains => "contains",
        Op::In => "in",
    }
}

/// A short description of a JSON value for error messages (never the whole value).
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// Parses one operand as a value of `field`'s type.
fn scalar(field: Field, value: &Value) -> Result<Scalar, String> {
    let kind = field.kind();
    let parsed = match (kind, value) {
        (Kind::Integer, Value::Number(n)) => n.as_i64().map(Scalar::Integer),
        (Kind::Text, Value::String(s)) => Some(Scalar::Text(s.clone())),
        (Kind::Boolean, Value::Bool(b)) => Some(Scalar::Boolean(*b)),
        (Kind::Timestamp, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Scalar::Timestamp(t.with_timezone(&Utc))),
        _ => None,
    };
    parsed.ok_or_else(|| {
        format!(
            "`{}` expects {}, got {}",
            field.name(),
            kind.expected(),
            describe(value)
        )
    })
}

impl ValidFilter {
    /// Rows skipped.
    pub fn skip(&self) -> u64 {
        self.skip
    }

    /// Page size.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The WHERE clause for `backend`: every condition, ANDed. The backend decides how
    /// `contains` ignores case.
    pub fn condition(&self, backend: DbBackend) -> SqlCondition {
        self.conditions
            .iter()
            .fold(SqlCondition::all(), |all, check| {
                all.add(check.expr(backend))
            })
    }

    /// The filtered and ordered query for `backend`, without the page bounds.
    pub fn query(&self, backend: DbBackend) -> Select<user::Entity> {
        let mut query = user::Entity::find().filter(self.condition(backend));
        for order in &self.order_by {
            let direction = match order.direction {
                Direction::Asc => sea_orm::Order::Asc,
                Direction::Desc => sea_orm::Order::Desc,
            };
            query = query.order_by(order.field.column(), direction);
        }
        // A total order makes pages stable.
        query.order_by_asc(user::Column::Id)
    }
}

impl Check {
    /// How many values the condition binds.
    fn values(&self) -> usize {
        match self {
            Self::Compare { .. } | Self::Contains { .. } => 1,
            Self::IsNull { .. } => 0,
            Self::In { values, .. } => values.len(),
        }
    }

    fn expr(&self, backend: DbBackend) -> SimpleExpr {
        match self {
            Self::Compare { field, cmp, value } => {
                let column = field.column();
                let value = sea_orm::Value::from(value);
                match cmp {
                    Cmp::Eq => column.eq(value),
                    Cmp::Ne => column.ne(value),
                    Cmp::Gt => column.gt(value),
                    Cmp::Gte => column.gte(value),
                    Cmp::Lt => column.lt(value),
                    Cmp::Lte => column.lte(value),
                }
            }
            Self::IsNull { field, negated } => {
                if *negated {
                    field.column().is_not_null()
                } else {
                    field.column().is_null()
                }
            }
            Self::Contains { field, text } => {
                // The pattern is the text as sent: the database folds case on both sides, with
                // its own rules. Lowering it here (Unicode) would not match SQLite, whose LIKE
                // and LOWER fold ASCII letters only: `LOWER('Émile')` is `Émile`.
                let pattern = format!("%{}%", escape_like(text));
                let column = Expr::col(field.column());
                match backend {
                    // Unicode-aware, by the database's locale. No `ESCAPE`: backslash is
                    // PostgreSQL's default escape character, and sea-query 1.0 wraps
                    // `ILIKE`'s right side in parentheses, where `ESCAPE` is a syntax error.
                    // (By path: in scope, `PgExpr::contains` would shadow `str::contains`.)
                    DbBackend::Postgres => postgres::PgExpr::ilike(column, LikeExpr::new(pattern)),
                    // SQLite: ASCII case only; it has no default escape character. MySQL: by
                    // the column's collation.
                    _ => column.like(LikeExpr::new(pattern).escape('\\')),
                }
            }
            Self::In { field, values } => field
                .column()
                .is_in(values.iter().map(sea_orm::Value::from)),
        }
    }
}

/// Escapes LIKE's wildcards so that `contains` matches them literally.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: serde_json::Value) -> Result<ValidFilter, String> {
        let raw: UserFilter = serde_json::from_value(json).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_filled_in() {
        let f = filter(serde_json::json!({})).unwrap();
        assert_eq!((f.skip(), f.limit()), (0, DEFAULT_LIMIT));
    }

    #[test]
    fn unknown_fields_and_ops_are_named() {
        let e =
            filter(serde_json::json!({"conditions": [{"field": "nmae", "op": "eq", "value": 1}]}))
                .unwrap_err();
        assert!(e.contains("nmae") && e.contains("expected one of"), "{e}");
        let e = filter(
            serde_json::json!({"conditions": [{"field": "name", "op": "like", "value": "a"}]}),
        )
        .unwrap_err();
        assert!(e.contains("like"), "{e}");
        let e = filter(serde_json::json!({"where": []})).unwrap_err();
        assert!(e.contains("where"), "{e}");
    }

    #[test]
    fn operand_types_are_checked() {
        for (cond, needle) in [
            (
                serde_json::json!({"field": "age", "op": "eq", "value": "x"}),
                "`age` expects an integer",
            ),
            (
                serde_json::json!({"field": "age", "op": "contains", "value": "x"}),
                "`contains` applies",
            ),
            (
                serde_json::json!({"field": "name", "op": "in", "value": "x"}),
                "`in` expects a list",
            ),
            (
                serde_json::json!({"field": "is_active", "op": "gt", "value": true}),
                "boolean field",
            ),
            (
                serde_json::json!({"field": "created_at", "op": "gt", "value": "yesterday"}),
                "RFC 3339",
            ),
            (
                serde_json::json!({"field": "name", "op": "eq", "value": null}),
                "never null",
            ),
            (
                serde_json::json!({"field": "id", "op": "in", "value": [1, "2"]}),
                "`id` expects an integer",
            ),
        ] {
            let e = filter(serde_json::json!({"conditions": [cond]})).unwrap_err();
            assert!(e.contains("conditions[0]") && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(filter(serde_json::json!({"limit": 0})).is_err());
        assert!(filter(serde_json::json!({"limit": 1001})).is_err());
        assert!(filter(serde_json::json!({"skip": -1})).is_err());
        assert_eq!(
            filter(serde_json::json!({"limit": 1000})).unwrap().limit(),
            1000
        );
    }

    #[test]
    fn skip_is_bounded() {
        assert_eq!(
            filter(serde_json::json!({"skip": MAX_SKIP}))
                .unwrap()
                .skip(),
            MAX_SKIP
        );
        for skip in [MAX_SKIP + 1, i64::MAX as u64 + 1, u64::MAX] {
            let e = filter(serde_json::json!({ "skip": skip })).unwrap_err();
            assert!(e.contains("`skip`"), "{e}");
        }
        assert_eq!(page_skip(None).unwrap(), 0);
    }

    #[test]
    fn bind_values_are_counted_across_the_filter() {
        let in_list =
            |n: usize| serde_json::json!({"field": "id", "op": "in", "value": vec![1; n]});
        let is_null = serde_json::json!({"field": "age", "op": "eq", "value": null});
        let scalar = serde_json::json!({"field": "age", "op": "gt", "value": 1});
        assert!(filter(serde_json::json!({"conditions": [in_list(999), is_null, scalar]})).is_ok());
        let e = filter(serde_json::json!({"conditions": [in_list(1000), scalar]})).unwrap_err();
        assert!(e.contains("1000") && e.contains("1001"), "{e}");
    }

    #[test]
    fn contains_folds_case_in_the_database() {
        let f = filter(serde_json::json!({
            "conditions": [{"field": "name", "op": "contains", "value": "Émile"}]
        }))
        .unwrap();
        let sql = |backend: DbBackend| {
            use sea_orm::QueryTrait;
            f.query(backend).build(backend).to_string()
        };
        // The pattern as sent (not lowered), the column as stored (no `LOWER`).
        let sqlite = sql(DbBackend::Sqlite);
        assert!(sqlite.contains(r#""name" LIKE "#), "{sqlite}");
        assert!(sqlite.contains("'%Émile%'"), "{sqlite}");
        assert!(!sqlite.to_lowercase().contains("lower("), "{sqlite}");
        let postgres = sql(DbBackend::Postgres);
        assert!(postgres.contains(r#""name" ILIKE '%Émile%'"#), "{postgres}");
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
