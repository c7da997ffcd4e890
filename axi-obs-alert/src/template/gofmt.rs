//! Go's `fmt` and `strconv` formatting, as far as templates need them: `%v` printing of
//! values, `Sprint`/`Sprintln`/`Sprintf`, `strconv.FormatFloat` and `strconv.Quote`.

use super::gotime;
use super::value::Value;

/// Go's `strconv.ParseBool`: the value, or `None` where Go answers "invalid syntax".
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.Atoi` on a 64-bit platform: an optional sign and decimal digits. The error
/// is Go's text (`strconv.Atoi: parsing "x": invalid syntax`, or `value out of range`).
pub(crate) fn atoi(v: &str) -> Result<i64, String> {
    let negative = v.starts_with('-');
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    let err = |why: &str| format!("strconv.Atoi: parsing {}: {why}", quote(v));
    if digits.is_empty() {
        return Err(err("invalid syntax"));
    }
    // Digit by digit as Go's `ParseUint` does: passing the largest unsigned 64-bit number is
    // reported where it happens, even when a bad character follows; the signed range is
    // checked once all the digits are read.
    let mut n: u128 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return Err(err("invalid syntax"));
        }
        n = n * 10 + u128::from(b - b'0');
        if n > u128::from(u64::MAX) {
            return Err(err("value out of range"));
        }
    }
    let n = i128::try_from(n).unwrap_or(i128::MAX);
    i64::try_from(if negative { -n } else { n }).map_err(|_| err("value out of range"))
}

/// Go's `strconv.IsPrint`, approximated without Unicode tables: letters, marks, numbers,
/// punctuation, symbols and the ASCII space; not controls, other spaces or format characters.
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    !(u == 0xAD
        || u == 0xA0
        || (0x200B..=0x200F).contains(&u)
        || (0x202A..=0x202E).contains(&u)
        || (0x2060..=0x206F).contains(&u)
        || u == 0xFEFF
        || (0xFFF9..=0xFFFB).contains(&u)
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..=0x10FFFF).contains(&u)
        || u == 0xFFFE
        || u == 0xFFFF)
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    quote_with(s, '"', false)
}

fn quote_with(s: &str, q: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for r in s.chars() {
        escape_rune(&mut out, r, q, ascii_only);
    }
    out.push(q);
    out
}

fn escape_rune(out: &mut String, r: char, q: char, ascii_only: bool) {
    if r == q || r == '\\' {
        out.push('\\');
        out.push(r);
        return;
    }
    if ascii_only {
        if r.is_ascii() && is_print(r) {
            out.push(r);
            return;
        }
    } else if is_print(r) {
        out.push(r);
        return;
    }
    match r {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Decimal digits (no leading or trailing zeros) and decimal point position of `v >= 0`.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

fn parse_sci(s: &str) -> Digits {
    // s is like "1.2345e6" or "0e0"
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(|b| b.is_ascii_digit()).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits { d, dp: exp + 1 }
}

fn shortest_digits(v: f64) -> Digits {
    if v == 0.0 {
        return Digits {
            d: Vec::new(),
            dp: 0,
        };
    }
    parse_sci(&format!("{v:e}"))
}

fn fixed_digits(v: f64, n: usize) -> Digits {
    if v == 0.0 {
        return Digits {
            d: Vec::new(),
            dp: 0,
        };
    }
    parse_sci(&format!("{:.*e}", n.saturating_sub(1), v))
}

fn fmt_e(out: &mut String, d: &Digits, prec: i32, ch: char) {
    out.push(if d.d.is_empty() { '0' } else { d.d[0] as char });
    if prec > 0 {
        out.push('.');
        for i in 1..=(prec as usize) {
            out.push(d.d.get(i).map(|&b| b as char).unwrap_or('0'));
        }
    }
    out.push(ch);
    let mut exp = if d.d.is_empty() { 0 } else { d.dp - 1 };
    if exp < 0 {
        out.push('-');
        exp = -exp;
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    out.push_str(&exp.to_string());
}

fn fmt_f(out: &mut String, d: &Digits, prec: i32) {
    if d.dp > 0 {
        let m = (d.d.len() as i32).min(d.dp) as usize;
        for &b in &d.d[..m] {
            out.push(b as char);
        }
        for _ in m as i32..d.dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = d.dp + i - 1;
            let ch = if j >= 0 && (j as usize) < d.d.len() {
                d.d[j as usize] as char
            } else {
                '0'
            };
            out.push(ch);
        }
    }
}

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for the formats `e`, `E`, `f`, `g`, `G`.
pub(crate) fn format_float(v: f64, fmt: char, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = v.is_sign_negative();
    let a = v.abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let shortest = prec < 0;
    match fmt {
        'f' | 'F' => {
            if shortest {
                let d = shortest_digits(a);
                let p = (d.d.len() as i32 - d.dp).max(0);
                fmt_f(&mut out, &d, p);
            } else {
                out.push_str(&format!("{:.*}", prec as usize, a));
            }
        }
        'e' | 'E' => {
            let d = if shortest {
                shortest_digits(a)
            } else {
                fixed_digits(a, prec as usize + 1)
            };
            let p = if shortest {
                (d.d.len() as i32 - 1).max(0)
            } else {
                prec
            };
            fmt_e(&mut out, &d, p, fmt);
        }
        _ => {
            let echar = if fmt == 'G' { 'E' } else { 'e' };
            let (d, mut p) = if shortest {
                let d = shortest_digits(a);
                let n = d.d.len() as i32;
                (d, n)
            } else {
                let p = if prec == 0 { 1 } else { prec };
                (fixed_digits(a, p as usize), p)
            };
            let nd = d.d.len() as i32;
            let mut eprec = p;
            if eprec > nd && nd >= d.dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = d.dp - 1;
            if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                fmt_e(&mut out, &d, p - 1, echar);
            } else {
                if p > d.dp {
                    p = nd;
                }
                fmt_f(&mut out, &d, (p - d.dp).max(0));
            }
        }
    }
    out
}

/// Formatting flags of one verb.
#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `digits` with zeros in front up to `width` characters, in one move.
fn zero_fill(digits: &mut String, width: usize) {
    if digits.len() < width {
        digits.insert_str(0, &"0".repeat(width - digits.len()));
    }
}

/// Go's `tooLarge`: a width or precision beyond this is refused (a format asking for a
/// gigabyte of padding is a mistake or an attack, not a layout).
const MAX_WIDTH: usize = 1_000_000;

/// Go's `parsenum`: the decimal number at `chars[start..]` and where it ends; `None` and the
/// end of the format when it grows too large (Go then reports the verb as missing).
fn parse_num(chars: &[char], start: usize) -> (Option<usize>, usize) {
    let mut num: usize = 0;
    let mut i = start;
    while i < chars.len() && chars[i].is_ascii_digit() {
        if num > MAX_WIDTH {
            return (None, chars.len());
        }
        num = num * 10 + (chars[i] as usize - '0' as usize);
        i += 1;
    }
    ((i > start).then_some(num), i)
}

fn pad(out: &mut String, s: &str, f: &Flags) {
    let n = s.chars().count();
    let w = f.width.unwrap_or(0);
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if f.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        let c = if f.zero { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(c, fill));
        out.push_str(s);
    }
}

fn fmt_float_verb(out: &mut String, v: f64, verb: char, f: &Flags) {
    let (fc, default_prec) = match verb {
        'v' => ('g', -1),
        'g' | 'G' => (verb, -1),
        'e' | 'E' => (verb, 6),
        _ => ('f', 6),
    };
    let prec = f.prec.map(|p| p as i32).unwrap_or(default_prec);
    let mut num = format_float(v, fc, prec);
    if !num.starts_with('-') && !num.starts_with('+') {
        num.insert(0, '+');
    }
    if f.space && num.starts_with('+') && !f.plus {
        num.replace_range(0..1, " ");
    }
    if num[1..].starts_with('I') || num[1..].starts_with('N') {
        let mut g = *f;
        g.zero = false;
        if num[1..].starts_with('N') && !f.space && !f.plus {
            num.remove(0);
        }
        pad(out, &num, &g);
        return;
    }
    if f.sharp && (fc == 'g' || fc == 'G') && !num.contains('.') && !num.contains('e') {
        num.push('.');
    }
    if f.plus || !num.starts_with('+') {
        if f.zero && !f.minus && f.width.is_some_and(|w| w > num.len()) {
            let w = f.width.unwrap_or(0);
            out.push_str(&num[..1]);
            out.extend(std::iter::repeat_n('0', w - num.len()));
            out.push_str(&num[1..]);
            return;
        }
        pad(out, &num, f);
        return;
    }
    pad(out, &num[1..], f);
}

fn fmt_integer(out: &mut String, neg: bool, mag: u128, verb: char, f: &Flags) {
    let (base, upper) = match verb {
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        _ => (10, false),
    };
    let mut digits = match base {
        2 => format!("{mag:b}"),
        8 => format!("{mag:o}"),
        16 if upper => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        _ => mag.to_string(),
    };
    if let Some(p) = f.prec {
        if p == 0 && mag == 0 {
            digits.clear();
        }
        zero_fill(&mut digits, p);
    } else if f.zero
        && !f.minus
        && let Some(w) = f.width
    {
        let mut w = w;
        if neg || f.plus || f.space {
            w = w.saturating_sub(1);
        }
        zero_fill(&mut digits, w);
    }
    let mut prefix = String::new();
    if neg {
        prefix.push('-');
    } else if f.plus {
        prefix.push('+');
    } else if f.space {
        prefix.push(' ');
    }
    if f.sharp {
        match verb {
            'x' => prefix.push_str("0x"),
            'X' => prefix.push_str("0X"),
            'b' => prefix.push_str("0b"),
            'o' if !digits.starts_with('0') => prefix.push('0'),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    let s = format!("{prefix}{digits}");
    let g = Flags { zero: false, ..*f };
    pad(out, &s, &g);
}

fn fmt_string(out: &mut String, s: &str, verb: char, f: &Flags) {
    let s: String = match f.prec {
        Some(p) if verb != 'x' && verb != 'X' => s.chars().take(p).collect(),
        _ => s.to_string(),
    };
    match verb {
        'q' => {
            let q = if f.sharp
                && !s.contains('`')
                && s.chars()
                    .all(|c| c == '\t' || (is_print(c) && c != '\u{FEFF}'))
            {
                format!("`{s}`")
            } else {
                quote_with(&s, '"', f.plus)
            };
            pad(out, &q, f);
        }
        'x' | 'X' => {
            let mut h = String::new();
            let bytes = s.as_bytes();
            let bytes = match f.prec {
                Some(p) => &bytes[..p.min(bytes.len())],
                None => bytes,
            };
            for (i, b) in bytes.iter().enumerate() {
                if f.space && i > 0 {
                    h.push(' ');
                }
                if f.sharp && (f.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, &h, f);
        }
        _ => pad(out, &s, f),
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    match v {
        Value::Nil => out.push_str("<nil>"),
        _ => {
            out.push_str(&v.type_name());
            out.push('=');
            print_value(out, v, 'v', &Flags::default());
        }
    }
    out.push(')');
}

/// Prints `v` with `verb` the way Go's `fmt` does (`printArg`/`printValue`).
fn print_value(out: &mut String, v: &Value, verb: char, f: &Flags) {
    if verb == 'T' {
        pad(out, &v.type_name(), f);
        return;
    }
    match v {
        Value::Nil => match verb {
            'v' => pad(out, "<nil>", f),
            _ => bad_verb(out, verb, v),
        },
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, if *b { "true" } else { "false" }, f),
            _ => bad_verb(out, verb, v),
        },
        Value::Int(i) => fmt_int_like(out, *i < 0, i.unsigned_abs() as u128, verb, f, v),
        Value::Uint(u) => fmt_int_like(out, false, *u as u128, verb, f, v),
        Value::Float(x) => match verb {
            'v' | 'b' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' => fmt_float_verb(out, *x, verb, f),
            _ => bad_verb(out, verb, v),
        },
        Value::String(s) => match verb {
            'v' | 's' | 'q' | 'x' | 'X' => fmt_string(out, s, verb, f),
            _ => bad_verb(out, verb, v),
        },
        Value::Time(t) => match verb {
            'v' | 's' | 'q' | 'x' | 'X' => fmt_string(out, &gotime::time_string(*t), verb, f),
            _ => bad_verb(out, verb, v),
        },
        Value::Duration(d) => match verb {
            'v' | 's' | 'q' | 'x' | 'X' => fmt_string(out, &gotime::duration_string(*d), verb, f),
            _ => fmt_int_like(out, *d < 0, d.unsigned_abs() as u128, verb, f, v),
        },
        Value::List(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, it, verb, f);
            }
            out.push(']');
        }
        Value::QueryResult(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, &Value::Sample(Box::new(it.clone())), verb, f);
            }
            out.push(']');
        }
        Value::StrMap(m) | Value::Kv(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_string_or_bad(out, k, verb, f);
                out.push(':');
                fmt_string_or_bad(out, val, verb, f);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_string_or_bad(out, k, verb, f);
                out.push(':');
                print_value(out, val, verb, f);
            }
            out.push(']');
        }
        Value::Sample(s) => {
            // Go prints a pointer to a struct as &{...} (at depth 0; deeper it prints the address,
            // which is not reproducible, so the contents are shown at every depth).
            out.push_str("&{");
            print_value(out, &Value::StrMap(s.labels.clone()), verb, f);
            out.push(' ');
            print_value(out, &Value::Float(s.value), verb, f);
            out.push('}');
        }
        Value::Struct(s) => {
            out.push('{');
            for (i, (_, val)) in s.fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, val, verb, f);
            }
            out.push('}');
        }
    }
}

fn fmt_string_or_bad(out: &mut String, s: &str, verb: char, f: &Flags) {
    match verb {
        'v' | 's' | 'q' | 'x' | 'X' => fmt_string(out, s, verb, f),
        _ => bad_verb(out, verb, &Value::String(s.to_string())),
    }
}

fn fmt_int_like(out: &mut String, neg: bool, mag: u128, verb: char, f: &Flags, v: &Value) {
    match verb {
        'v' | 'd' | 'b' | 'o' | 'O' | 'x' | 'X' => fmt_integer(out, neg, mag, verb, f),
        'c' | 'q' | 'U' => {
            let code = if neg {
                0xFFFD
            } else {
                mag.min(0x10FFFF) as u32
            };
            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
            let s = match verb {
                'c' => c.to_string(),
                'q' => {
                    let mut s = String::from("'");
                    escape_rune(&mut s, c, '\'', f.plus);
                    s.push('\'');
                    s
                }
                _ => {
                    let mut s = format!("U+{:04X}", code);
                    if f.sharp && is_print(c) {
                        s.push_str(&format!(" '{c}'"));
                    }
                    s
                }
            };
            pad(out, &s, f);
        }
        _ => bad_verb(out, verb, v),
    }
}

/// `fmt.Sprint` of one value (`%v`).
pub(crate) fn sprint_value(v: &Value) -> String {
    let mut out = String::new();
    print_value(&mut out, v, 'v', &Flags::default());
    out
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        print_value(&mut out, a, 'v', &Flags::default());
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln`: spaces between all operands and a trailing newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        print_value(&mut out, a, 'v', &Flags::default());
    }
    out.push('\n');
    out
}

fn arg_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Uint(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// Go's `fmt.Sprintf`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut arg_num = 0usize;
    let mut reordered = false;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut f = Flags::default();
        // flags
        while i < chars.len() {
            match chars[i] {
                '#' => f.sharp = true,
                '0' => f.zero = !f.minus,
                '+' => f.plus = true,
                '-' => {
                    f.minus = true;
                    f.zero = false;
                }
                ' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good_arg_num = true;
        // argument index
        let parse_index =
            |i: &mut usize, arg_num: &mut usize, good: &mut bool, reordered: &mut bool| {
                if *i < chars.len() && chars[*i] == '[' {
                    *reordered = true;
                    let start = *i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != ']' {
                        j += 1;
                    }
                    if j >= chars.len() {
                        *good = false;
                        *i = chars.len();
                        return;
                    }
                    let s: String = chars[start..j].iter().collect();
                    match s.parse::<usize>() {
                        Ok(n) if n >= 1 && n <= args.len() => *arg_num = n - 1,
                        _ => *good = false,
                    }
                    *i = j + 1;
                }
            };
        parse_index(&mut i, &mut arg_num, &mut good_arg_num, &mut reordered);
        // width
        if i < chars.len() && chars[i] == '*' {
            i += 1;
            match args
                .get(arg_num)
                .and_then(arg_int)
                .filter(|w| w.unsigned_abs() <= MAX_WIDTH as u64)
            {
                Some(w) => {
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.width = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            arg_num += 1;
        } else {
            let (width, next) = parse_num(&chars, i);
            f.width = width;
            i = next;
        }
        // precision
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            parse_index(&mut i, &mut arg_num, &mut good_arg_num, &mut reordered);
            if i < chars.len() && chars[i] == '*' {
                i += 1;
                match args.get(arg_num).and_then(arg_int) {
                    Some(p) if p >= 0 && p as u64 <= MAX_WIDTH as u64 => f.prec = Some(p as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                arg_num += 1;
            } else {
                let (prec, next) = parse_num(&chars, i);
                f.prec = Some(prec.unwrap_or(0));
                i = next;
            }
        }
        parse_index(&mut i, &mut arg_num, &mut good_arg_num, &mut reordered);
        if i >= chars.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !good_arg_num {
            out.push_str(&format!("%!{verb}(BADINDEX)"));
            continue;
        }
        let Some(arg) = args.get(arg_num) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        arg_num += 1;
        if verb == 'w' {
            bad_verb(&mut out, verb, arg);
            continue;
        }
        print_value(&mut out, arg, verb, &f);
    }
    if !reordered && arg_num < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[arg_num..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            match a {
                Value::Nil => out.push_str("<nil>"),
                _ => {
                    out.push_str(&a.type_name());
                    out.push('=');
                    print_value(&mut out, a, 'v', &Flags::default());
                }
            }
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn atoi_takes_what_go_takes() {
        assert_eq!(super::atoi("+12"), Ok(12));
        assert_eq!(super::atoi("-0"), Ok(0));
        assert_eq!(super::atoi("007"), Ok(7));
        assert_eq!(
            super::atoi("1_000").unwrap_err(),
            r#"strconv.Atoi: parsing "1_000": invalid syntax"#
        );
        for bad in ["", "+", " 1", "1.0", "0x10"] {
            assert!(
                super::atoi(bad).unwrap_err().ends_with("invalid syntax"),
                "{bad}"
            );
        }
        assert_eq!(
            super::atoi("-99999999999999999999").unwrap_err(),
            r#"strconv.Atoi: parsing "-99999999999999999999": value out of range"#
        );
        // Past the unsigned range mid-string: out of range; within it, the bad character.
        assert!(
            super::atoi("99999999999999999999x")
                .unwrap_err()
                .ends_with("value out of range")
        );
        assert!(
            super::atoi("9999999999999999999x")
                .unwrap_err()
                .ends_with("invalid syntax")
        );
        assert!(
            super::atoi("-9223372036854775809")
                .unwrap_err()
                .ends_with("value out of range")
        );
        assert_eq!(super::atoi("-9223372036854775808"), Ok(i64::MIN));
        assert!(super::atoi("9223372036854775808").is_err());
    }
}
