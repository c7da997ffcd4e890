//! The evaluator: walks the parsed expression at one timestamp at a time.
//!
//! A range query is a sequence of instant evaluations, which is how Prometheus defines it;
//! `@ start()` and `@ end()` refer to the outermost query's bounds throughout.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE,
    T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB, T_SUM, T_TOPK, TokenType,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, Offset, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};

use super::functions::{self, Arg, CallCtx, RangeArg, WindowVisitor, Windows};
use super::fxhash::{FxMap, FxSet};
use super::grouping::Groups;
use super::numeric::{format_go_float, kahan_inc, quantile};
use super::storage::Matcher;
use super::value::{Labels, Point, Projection, Sample, Series, Value, is_stale};
use super::{Engine, EvalError, Storage};

type Result<T> = std::result::Result<T, EvalError>;

pub(crate) struct Evaluator<'a> {
    engine: &'a Engine,
    storage: &'a dyn Storage,
    start: i64,
    end: i64,
    step: i64,
    deadline: Option<Instant>,
    /// Samples loaded by the current step.
    loaded: Cell<usize>,
    /// Compiled matchers per selector node (keyed by the node's address, stable while the
    /// expression is borrowed).
    matchers: RefCell<HashMap<usize, Rc<Vec<Matcher>>>>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        storage: &'a dyn Storage,
        start: i64,
        end: i64,
        step: i64,
    ) -> Self {
        Evaluator {
            engine,
            storage,
            start,
            end,
            step,
            deadline: engine.timeout.map(|d| Instant::now() + d),
            loaded: Cell::new(0),
            matchers: RefCell::new(HashMap::new()),
        }
    }

    /// An instant query at `start`.
    pub(crate) fn instant(&self, expr: &Expr) -> Result<Value> {
        let t = self.start;
        Ok(match self.eval(expr, t)? {
            Value::Vector(mut v) => {
                for s in &mut v {
                    s.t = t;
                }
                Value::Vector(v)
            }
            other => other,
        })
    }

    /// A range query from `start` to `end` every `step`.
    pub(crate) fn range(&self, expr: &Expr) -> Result<Vec<Series>> {
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            ValueType::Matrix => {
                return Err(EvalError::new(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
                ));
            }
            ValueType::String => {
                return Err(EvalError::new(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
                ));
            }
        }
        let mut out: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
        let mut t = self.start;
        // The answer's points count towards the sample limit, as in Prometheus.
        let mut points = 0;
        while t <= self.end {
            self.loaded.set(points);
            match self.eval(expr, t)? {
                Value::Scalar { v, .. } => {
                    out.entry(Labels::new()).or_default().push(Point { t, v });
                    points += 1;
                }
                Value::Vector(samples) => {
                    points += samples.len();
                    for s in samples {
                        out.entry(s.labels).or_default().push(Point { t, v: s.v });
                    }
                }
                other => {
                    return Err(EvalError::new(format!(
                        "unexpected {} in range query",
                        other.type_name()
                    )));
                }
            }
            self.loaded.set(0);
            self.check_limits(points)?;
            let Some(next) = t.checked_add(self.step) else {
                break;
            };
            t = next;
        }
        Ok(out
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }

    fn eval(&self, expr: &Expr, t: i64) -> Result<Value> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar { t, v: n.val }),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar { t, v } => Ok(Value::Scalar { t, v: -v }),
                Value::Vector(v) => {
                    let v: Vec<Sample> = v
                        .into_iter()
                        .map(|s| Sample {
                            labels: s.labels.without_name(),
                            t,
                            v: -s.v,
                        })
                        .collect();
                    check_unique(&v)?;
                    Ok(Value::Vector(v))
                }
                other => Err(EvalError::new(format!(
                    "unary minus is not defined for a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.select_instant(vs, t, false)?)),
            Expr::MatrixSelector(ms) => {
                let (series, _, _) = self.select_range(&ms.vs, ms.range.as_millis() as i64, t)?;
                Ok(Value::Matrix(series))
            }
            Expr::Subquery(sq) => {
                let (series, _, _) = self.subquery(sq, t)?;
                Ok(Value::Matrix(series))
            }
            Expr::Call(c) => self.call(c, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Extension(_) => Err(EvalError::new("unsupported: extension expressions")),
        }
    }

    fn check_limits(&self, loaded: usize) -> Result<()> {
        let total = self.loaded.get() + loaded;
        self.loaded.set(total);
        if total > self.engine.max_samples {
            return Err(EvalError::new(
                "query processing would load too many samples into memory in query execution",
            ));
        }
        if let Some(deadline) = self.deadline
            && Instant::now() > deadline
        {
            return Err(EvalError::new("query timed out in query execution"));
        }
        Ok(())
    }

    fn compiled(&self, vs: &VectorSelector) -> Result<Rc<Vec<Matcher>>> {
        let key = vs as *const VectorSelector as usize;
        if let Some(m) = self.matchers.borrow().get(&key) {
            return Ok(m.clone());
        }
        let mut ms = Vec::with_capacity(vs.matchers.matchers.len() + 1);
        if let Some(name) = &vs.name {
            ms.push(Matcher::equal(METRIC_NAME, name));
        }
        for m in &vs.matchers.matchers {
            ms.push(self.engine.regexes.compile(m).map_err(EvalError)?);
        }
        let ms = Rc::new(ms);
        self.matchers.borrow_mut().insert(key, ms.clone());
        Ok(ms)
    }

    /// The time a selector or subquery looks at: `@` (or the evaluation time) minus `offset`.
    fn reference_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(*st),
        };
        base - offset_ms(offset)
    }

    /// The latest sample of each series within the lookback window, unless it is a staleness
    /// marker. `keep_timestamps` keeps each sample's own time (for `timestamp()`).
    fn select_instant(
        &self,
        vs: &VectorSelector,
        t: i64,
        keep_timestamps: bool,
    ) -> Result<Vec<Sample>> {
        let matchers = self.compiled(vs)?;
        let reference = self.reference_time(&vs.at, &vs.offset, t);
        let latest = self.storage.select_latest(
            &matchers,
            reference.saturating_sub(self.engine.lookback_ms),
            reference,
        );
        self.check_limits(latest.len())?;
        Ok(latest
            .into_iter()
            .filter(|(_, p)| !is_stale(p.v))
            .map(|(labels, p)| Sample {
                labels,
                t: if keep_timestamps { p.t } else { t },
                v: p.v,
            })
            .collect())
    }

    /// The points of each series in `(reference - range, reference]`, staleness markers
    /// removed; series left empty are dropped. Returns the window too.
    fn select_range(
        &self,
        vs: &VectorSelector,
        range: i64,
        t: i64,
    ) -> Result<(Vec<Series>, i64, i64)> {
        let matchers = self.compiled(vs)?;
        let end = self.reference_time(&vs.at, &vs.offset, t);
        let start = end - range;
        let mut series = self.storage.select(&matchers, start, end);
        self.check_limits(series.iter().map(|s| s.points.len()).sum())?;
        series.retain_mut(|s| {
            s.points.retain(|p| !is_stale(p.v));
            !s.points.is_empty()
        });
        Ok((series, start, end))
    }

    /// The series of a range selector as a range argument, read when a function visits them:
    /// each window borrowed from the storage where it can be, staleness markers removed
    /// (copying only the windows that hold one), series left empty skipped.
    fn range_arg(&self, vs: &VectorSelector, range: i64, t: i64) -> Result<RangeArg<'_>> {
        let matchers = self.compiled(vs)?;
        let end = self.reference_time(&vs.at, &vs.offset, t);
        let start = end - range;
        let read = move |visit: &mut WindowVisitor<'_>| {
            let mut loaded = 0;
            let mut fresh = Vec::new();
            self.storage
                .visit_windows(&matchers, start, end, &mut |labels, points| {
                    loaded += points.len();
                    if !points.iter().any(|p| is_stale(p.v)) {
                        visit(labels, points);
                        return;
                    }
                    fresh.clear();
                    fresh.extend(points.iter().filter(|p| !is_stale(p.v)));
                    if !fresh.is_empty() {
                        visit(labels, &fresh);
                    }
                });
            self.check_limits(loaded)
        };
        Ok(RangeArg {
            series: Windows::Lent(Box::new(read)),
            start,
            end,
        })
    }

    /// Evaluates the inner expression at every step of the subquery's window, steps aligned
    /// to multiples of the step as Prometheus does.
    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<(Vec<Series>, i64, i64)> {
        let end = self.reference_time(&sq.at, &sq.offset, t);
        let range = sq.range.as_millis() as i64;
        let step = sq
            .step
            .map(|d| d.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.engine.subquery_step_ms);
        let start = end - range;
        let mut ts = step * (start / step);
        if ts <= start {
            ts += step;
        }
        let mut out: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
        while ts <= end {
            let added = match self.eval(&sq.expr, ts)? {
                Value::Vector(v) => {
                    let n = v.len();
                    for s in v {
                        out.entry(s.labels)
                            .or_default()
                            .push(Point { t: ts, v: s.v });
                    }
                    n
                }
                Value::Scalar { v, .. } => {
                    out.entry(Labels::new())
                        .or_default()
                        .push(Point { t: ts, v });
                    1
                }
                other => {
                    return Err(EvalError::new(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )));
                }
            };
            // Every step: a long subquery is stopped by the limits as it grows, not after.
            self.check_limits(added)?;
            let Some(next) = ts.checked_add(step) else {
                break;
            };
            ts = next;
        }
        let series: Vec<Series> = out
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect();
        Ok((series, start, end))
    }

    fn call(&self, c: &Call, t: i64) -> Result<Value> {
        let mut args = Vec::with_capacity(c.args.args.len());
        for (i, a) in c.args.args.iter().enumerate() {
            let a = unwrap_parens(a);
            let arg = match a {
                Expr::VectorSelector(vs) if c.func.name == "timestamp" && i == 0 => {
                    Arg::Vector(self.select_instant(vs, t, true)?)
                }
                Expr::MatrixSelector(ms) => {
                    Arg::Range(self.range_arg(&ms.vs, ms.range.as_millis() as i64, t)?)
                }
                Expr::Subquery(sq) => {
                    let (series, start, end) = self.subquery(sq, t)?;
                    Arg::Range(RangeArg {
                        series: Windows::Owned(series),
                        start,
                        end,
                    })
                }
                _ => match self.eval(a, t)? {
                    Value::Scalar { v, .. } => Arg::Scalar(v),
                    Value::String(s) => Arg::String(s),
                    Value::Vector(v) => Arg::Vector(v),
                    Value::Matrix(_) => {
                        return Err(EvalError::new(format!(
                            "unsupported: a range vector from {a} as an argument of {}()",
                            c.func.name
                        )));
                    }
                },
            };
            args.push(arg);
        }
        // A function of a range selector gives each series at most one sample, labelled as
        // the series or without its metric name: no duplicates when the selector names one
        // metric.
        let unique = c.args.args.iter().any(
            |a| matches!(unwrap_parens(a), Expr::MatrixSelector(ms) if selects_one_metric(&ms.vs)),
        ) && args
            .iter()
            .all(|a| matches!(a, Arg::Scalar(_) | Arg::Range(_)));
        let value = functions::call(&CallCtx { t, call: c }, args)?;
        if let Value::Vector(v) = &value
            && !unique
        {
            check_unique(v)?;
        }
        Ok(value)
    }

    fn scalar_param(&self, param: Option<&Expr>, t: i64, op: TokenType) -> Result<f64> {
        match param.map(|p| self.eval(p, t)).transpose()? {
            Some(Value::Scalar { v, .. }) => Ok(v),
            _ => Err(EvalError::new(format!("{op} needs a scalar parameter"))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value> {
        let op = a.op;
        let Value::Vector(input) = self.eval(&a.expr, t)? else {
            return Err(EvalError::new(format!("{op} needs an instant vector")));
        };
        let projection = match &a.modifier {
            None => Projection::Keep(&[]),
            Some(LabelModifier::Include(by)) => Projection::Keep(&by.labels),
            Some(LabelModifier::Exclude(without)) => Projection::Drop(&without.labels),
        };
        let id = op.id();
        // Group in order of first appearance, as Prometheus outputs them.
        let mut groups = Groups::default();
        let count_values_label = if id == T_COUNT_VALUES {
            match a.param.as_deref().map(|p| self.eval(p, t)).transpose()? {
                Some(Value::String(s)) => {
                    // Prometheus 3 takes any UTF-8 label name (`app-version`); only an empty
                    // one is refused (a Rust string is always UTF-8).
                    if s.is_empty() {
                        return Err(EvalError::new(format!("invalid label name {s:?}")));
                    }
                    Some(s)
                }
                _ => return Err(EvalError::new("count_values needs a string parameter")),
            }
        } else {
            None
        };
        let whole_samples = matches!(id, T_TOPK | T_BOTTOMK);
        for s in input {
            let i = match &count_values_label {
                Some(label) => {
                    let mut key = s.labels.project(&projection);
                    key.set(label.clone(), format_go_float(s.v));
                    groups.of_key(key)
                }
                None => groups.of(&s.labels, &projection),
            };
            let group = &mut groups.list[i];
            if whole_samples {
                group.samples.push(s);
            } else {
                group.values.push(s.v);
            }
        }
        let groups = groups.list;
        let mut out = Vec::with_capacity(groups.len());
        match id {
            T_TOPK | T_BOTTOMK => {
                let k = self.scalar_param(a.param.as_deref(), t, op)?;
                if k.is_nan() {
                    return Err(EvalError::new("Parameter value is NaN"));
                }
                // Prometheus's bounds and words (the value as Go's `%v` writes it).
                const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
                if k <= -TWO_TO_63 {
                    return Err(EvalError::new(format!(
                        "Scalar value {} underflows int64",
                        crate::template::gofmt::format_float(k, 'g', -1)
                    )));
                }
                if k >= TWO_TO_63 {
                    return Err(EvalError::new(format!(
                        "Scalar value {} overflows int64",
                        crate::template::gofmt::format_float(k, 'g', -1)
                    )));
                }
                let k = k as i64;
                if k < 1 {
                    return Ok(Value::Vector(Vec::new()));
                }
                for group in groups {
                    let mut members = group.samples;
                    if id == T_TOPK {
                        members.sort_by(|x, y| desc_nan_last(x.v, y.v));
                    } else {
                        members.sort_by(|x, y| asc_nan_last(x.v, y.v));
                    }
                    members.truncate(k as usize);
                    out.extend(members.into_iter().map(|s| Sample { t, ..s }));
                }
            }
            _ => {
                let q = if id == T_QUANTILE {
                    Some(self.scalar_param(a.param.as_deref(), t, op)?)
                } else {
                    None
                };
                for group in groups {
                    let (labels, values) = (group.labels, group.values);
                    let v = match id {
                        T_SUM => kahan_sum(&values),
                        T_AVG => average(&values),
                        T_COUNT | T_COUNT_VALUES => values.len() as f64,
                        T_GROUP => 1.0,
                        T_MIN => values.iter().fold(f64::NAN, |acc, &x| {
                            if acc > x || acc.is_nan() { x } else { acc }
                        }),
                        T_MAX => values.iter().fold(f64::NAN, |acc, &x| {
                            if acc < x || acc.is_nan() { x } else { acc }
                        }),
                        T_STDVAR => variance(&values),
                        T_STDDEV => variance(&values).sqrt(),
                        T_QUANTILE => quantile(q.unwrap_or(f64::NAN), values),
                        _ => {
                            return Err(EvalError::new(format!(
                                "unsupported: the aggregation {op}"
                            )));
                        }
                    };
                    out.push(Sample { labels, t, v });
                }
            }
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value> {
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let value = match (lhs, rhs) {
            (Value::Scalar { v: l, .. }, Value::Scalar { v: r, .. }) => {
                let (v, keep) = scalar_op(op, l, r)?;
                let v = if is_comparison(op) {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                };
                return Ok(Value::Scalar { t, v });
            }
            (Value::Vector(l), Value::Scalar { v: r, .. }) => {
                return vector_scalar(op, l, r, false, return_bool, t).map(Value::Vector);
            }
            (Value::Scalar { v: l, .. }, Value::Vector(r)) => {
                return vector_scalar(op, r, l, true, return_bool, t).map(Value::Vector);
            }
            (Value::Vector(l), Value::Vector(r)) => self.vector_vector(b, op, l, r, t)?,
            (l, r) => {
                return Err(EvalError::new(format!(
                    "binary operator {} is not defined between {} and {}",
                    b.op,
                    l.type_name(),
                    r.type_name()
                )));
            }
        };
        check_unique(&value)?;
        Ok(Value::Vector(value))
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        op: u16,
        lhs: Vec<Sample>,
        rhs: Vec<Sample>,
        t: i64,
    ) -> Result<Vec<Sample>> {
        let modifier = b.modifier.as_ref();
        let (on, names): (bool, &[String]) = match modifier.and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, &l.labels),
            Some(LabelModifier::Exclude(l)) => (false, &l.labels),
            None => (false, &[]),
        };
        let signature = |ls: &Labels| -> Labels {
            if on {
                ls.keep(names)
            } else if names.is_empty() {
                // The same pairs as `drop_names(&[])`, cached in the shared set.
                ls.without_name()
            } else {
                ls.drop_names(names)
            }
        };
        match op {
            T_LAND => {
                let right: FxSet<Labels> = rhs.iter().map(|s| signature(&s.labels)).collect();
                return Ok(lhs
                    .into_iter()
                    .filter(|s| right.contains(&signature(&s.labels)))
                    .map(|s| Sample { t, ..s })
                    .collect());
            }
            T_LUNLESS => {
                let right: FxSet<Labels> = rhs.iter().map(|s| signature(&s.labels)).collect();
                return Ok(lhs
                    .into_iter()
                    .filter(|s| !right.contains(&signature(&s.labels)))
                    .map(|s| Sample { t, ..s })
                    .collect());
            }
            T_LOR => {
                let left: FxSet<Labels> = lhs.iter().map(|s| signature(&s.labels)).collect();
                let mut out: Vec<Sample> = lhs.into_iter().map(|s| Sample { t, ..s }).collect();
                out.extend(
                    rhs.into_iter()
                        .filter(|s| !left.contains(&signature(&s.labels)))
                        .map(|s| Sample { t, ..s }),
                );
                return Ok(out);
            }
            _ => {}
        }
        if lhs.is_empty() || rhs.is_empty() {
            return Ok(Vec::new());
        }
        let card = modifier
            .map(|m| m.card.clone())
            .unwrap_or(VectorMatchCardinality::OneToOne);
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let include: &[String] = match &card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                &l.labels
            }
            _ => &[],
        };
        // `many` is the side whose samples each produce one output; `one` is looked up.
        let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
        let mut one_by_sig: FxMap<Labels, &Sample> = FxMap::default();
        for s in &one {
            let sig = signature(&s.labels);
            if let Some(dup) = one_by_sig.get(&sig) {
                let side = if one_to_many { "left" } else { "right" };
                let matched = if on {
                    s.labels.keep(names)
                } else {
                    s.labels.drop_names(names)
                };
                return Err(EvalError::new(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    matched.go_string(),
                    dup.labels.go_string(),
                    s.labels.go_string()
                )));
            }
            one_by_sig.insert(sig, s);
        }
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        let mut matched: FxMap<Labels, FxSet<Labels>> = FxMap::default();
        let mut out = Vec::new();
        for m in &many {
            let sig = signature(&m.labels);
            let Some(o) = one_by_sig.get(&sig) else {
                continue;
            };
            // One-to-one matching must be unique even for pairs a comparison filters out.
            if one_to_one
                && !matched
                    .entry(sig.clone())
                    .or_default()
                    .insert(Labels::new())
            {
                return Err(EvalError::new(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            let (l, r) = if one_to_many { (o.v, m.v) } else { (m.v, o.v) };
            let (mut v, keep) = scalar_op(op, l, r)?;
            let return_bool = modifier.is_some_and(|m| m.return_bool);
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let mut labels = m.labels.clone();
            if drops_name(op) || return_bool {
                labels.remove(METRIC_NAME);
            }
            if one_to_one {
                labels = if on {
                    labels.keep(names)
                } else {
                    let mut kept = labels.clone();
                    for n in names {
                        kept.remove(n);
                    }
                    kept
                };
            }
            for n in include {
                match o.labels.get(n) {
                    Some(v) => labels.set(n.clone(), v.to_owned()),
                    None => labels.remove(n),
                }
            }
            if !one_to_one && !matched.entry(sig).or_default().insert(labels.clone()) {
                return Err(EvalError::new(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            out.push(Sample { labels, t, v });
        }
        Ok(out)
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

fn system_time_ms(st: SystemTime) -> i64 {
    match st.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// One operation on two floats: the value and, for comparisons, whether it holds (the value is
/// then the left operand).
fn scalar_op(op: u16, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(EvalError::new(format!(
                "operator {} not allowed here",
                TokenType::new(op)
            )));
        }
    })
}

/// A vector with a scalar; `swapped` when the scalar was on the left.
fn vector_scalar(
    op: u16,
    vector: Vec<Sample>,
    scalar: f64,
    swapped: bool,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>> {
    if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
        return Err(EvalError::new(
            "set operator not allowed in binary scalar expression",
        ));
    }
    // Each sample keeps its labels, or loses only its metric name: the input is unique, so
    // the output is too unless dropping names makes two samples alike.
    let drop_names = drops_name(op) || return_bool;
    let check = drop_names && !share_name(vector.iter().map(|s| &s.labels));
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if swapped {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, mut keep) = scalar_op(op, l, r)?;
        if is_comparison(op) && swapped {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            let labels = if drop_names {
                s.labels.without_name()
            } else {
                s.labels
            };
            out.push(Sample { labels, t, v });
        }
    }
    if check {
        check_unique(&out)?;
    }
    Ok(out)
}

/// Whether a selector matches a single metric name (`name{...}` or `{__name__="name"}`).
fn selects_one_metric(vs: &VectorSelector) -> bool {
    vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && matches!(m.op, promql_parser::label::MatchOp::Equal))
}

/// Whether all label sets have the same metric name (or all have none).
fn share_name<'l>(mut sets: impl Iterator<Item = &'l Labels>) -> bool {
    let Some(first) = sets.next() else {
        return true;
    };
    let name = first.name();
    sets.all(|ls| ls.name() == name)
}

fn check_unique(v: &[Sample]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = FxSet::with_capacity_and_hasher(v.len(), Default::default());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(EvalError::new(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    sum + c
}

/// `avg`: a Kahan sum divided by the count, switching to an incremental mean when the sum
/// would overflow, as Prometheus does.
fn average(values: &[f64]) -> f64 {
    let Some((&first, rest)) = values.split_first() else {
        return f64::NAN;
    };
    let (mut sum, mut c) = (first, 0.0);
    let mut mean = 0.0;
    let mut incremental = false;
    let mut count = 1.0;
    for &v in rest {
        count += 1.0;
        if !incremental {
            let (s, k) = kahan_inc(v, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, k);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance with Welford's method, as Prometheus's `stdvar`.
fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}
