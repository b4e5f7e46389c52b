//! The expression forms sqlparser gives their own AST nodes (CASE, CAST,
//! CONVERT, SUBSTRING, TRIM, POSITION, CEIL/FLOOR, LIKE … ESCAPE,
//! `+ INTERVAL`, DATE_ADD) compiled into [`Expr`], as more methods of the
//! statement compiler's [`ExprCompiler`].

use sqlparser::ast::{
    self, CastKind, CeilFloorKind, CharacterLength, DataType, DateTimeField, ExactNumberInfo,
    FunctionArg, FunctionArgExpr, TrimWhereField,
};

use crate::types::Value;

use super::super::SqlError;
use super::super::compile::{ExprCompiler, collation_of};
use super::super::expr::Expr;
use super::{CastTo, Func, IntervalUnit};

impl ExprCompiler<'_> {
    /// `e [NOT] LIKE p ESCAPE 'c'`: the escape must be a constant of at
    /// most one character.
    pub(crate) fn like_escape(
        &mut self,
        e: &ast::Expr,
        pattern: &ast::Expr,
        escape: &ast::Expr,
        negated: bool,
    ) -> Result<Expr, SqlError> {
        let (e, p) = (self.expr(e)?, self.expr(pattern)?);
        let esc = match self.expr(escape)? {
            Expr::Lit(Value::Bytes(b)) => {
                let s = String::from_utf8_lossy(&b).into_owned();
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (c, None) => c,
                    _ => return Err(wrong_arguments("ESCAPE")),
                }
            }
            _ => return Err(wrong_arguments("ESCAPE")),
        };
        let coll = collation_of(&[&e]);
        Ok(Expr::LikeEscape(
            Box::new(e),
            Box::new(p),
            esc,
            negated,
            coll,
        ))
    }

    pub(crate) fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        otherwise: Option<&ast::Expr>,
    ) -> Result<Expr, SqlError> {
        let operand = operand.map(|o| self.expr(o)).transpose()?;
        let mut arms = Vec::with_capacity(conditions.len());
        for c in conditions {
            arms.push((self.expr(&c.condition)?, self.expr(&c.result)?));
        }
        let otherwise = otherwise.map(|o| self.expr(o)).transpose()?;
        let mut compared: Vec<&Expr> = operand.iter().collect();
        compared.extend(arms.iter().map(|a| &a.0));
        let coll = collation_of(&compared);
        Ok(Expr::Case(
            operand.map(Box::new),
            arms,
            otherwise.map(Box::new),
            coll,
        ))
    }

    pub(crate) fn cast(
        &mut self,
        kind: &CastKind,
        e: &ast::Expr,
        ty: &DataType,
    ) -> Result<Expr, SqlError> {
        if !matches!(kind, CastKind::Cast) {
            return Err(SqlError::unsupported(format!("{kind:?}")));
        }
        let to = cast_target(ty)?;
        Ok(Expr::Cast(Box::new(self.expr(e)?), to))
    }

    /// CONVERT(e, type) or CONVERT(e USING charset) (utf8mb4 only: the
    /// value is unchanged).
    pub(crate) fn convert(
        &mut self,
        e: &ast::Expr,
        ty: Option<&DataType>,
        charset: Option<&ast::ObjectName>,
    ) -> Result<Expr, SqlError> {
        match (ty, charset) {
            (Some(ty), _) => Ok(Expr::Cast(Box::new(self.expr(e)?), cast_target(ty)?)),
            (None, Some(cs)) if is_utf8(&cs.to_string()) => {
                Ok(Expr::Cast(Box::new(self.expr(e)?), CastTo::Char(None)))
            }
            _ => Err(SqlError::unsupported(
                "CONVERT … USING a character set other than utf8mb4",
            )),
        }
    }

    pub(crate) fn substring(
        &mut self,
        e: &ast::Expr,
        from: Option<&ast::Expr>,
        len: Option<&ast::Expr>,
    ) -> Result<Expr, SqlError> {
        let mut args = vec![self.expr(e)?];
        args.push(match from {
            Some(f) => self.expr(f)?,
            None => Expr::Lit(Value::Int(1)),
        });
        if let Some(l) = len {
            args.push(self.expr(l)?);
        }
        Ok(Expr::Func(Func::Substring, args))
    }

    pub(crate) fn trim(
        &mut self,
        place: Option<&TrimWhereField>,
        what: Option<&ast::Expr>,
        e: &ast::Expr,
        characters: Option<&Vec<ast::Expr>>,
    ) -> Result<Expr, SqlError> {
        if characters.is_some() {
            return Err(SqlError::unsupported("TRIM(s, characters)"));
        }
        let mut args = vec![self.expr(e)?];
        if let Some(w) = what {
            args.push(self.expr(w)?);
        }
        let f = match place {
            None | Some(TrimWhereField::Both) => Func::Trim,
            Some(TrimWhereField::Leading) => Func::TrimLeading,
            Some(TrimWhereField::Trailing) => Func::TrimTrailing,
        };
        Ok(Expr::Func(f, args))
    }

    /// POSITION(needle IN hay) = LOCATE(needle, hay).
    pub(crate) fn position(
        &mut self,
        needle: &ast::Expr,
        hay: &ast::Expr,
    ) -> Result<Expr, SqlError> {
        let args = vec![self.expr(needle)?, self.expr(hay)?];
        Ok(Expr::Func(Func::Locate, args))
    }

    pub(crate) fn ceil_floor(
        &mut self,
        e: &ast::Expr,
        field: &CeilFloorKind,
        ceil: bool,
    ) -> Result<Expr, SqlError> {
        if !matches!(
            field,
            CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
        ) {
            return Err(SqlError::unsupported("CEIL/FLOOR with a unit or a scale"));
        }
        let f = if ceil { Func::Ceil } else { Func::Floor };
        Ok(Expr::Func(f, vec![self.expr(e)?]))
    }

    /// `d + INTERVAL n unit` / `d - INTERVAL n unit`, when `right` is an
    /// interval (`None` otherwise).
    pub(crate) fn interval_arith(
        &mut self,
        left: &ast::Expr,
        right: &ast::Expr,
        sub: bool,
    ) -> Option<Result<Expr, SqlError>> {
        let ast::Expr::Interval(iv) = right else {
            return None;
        };
        Some(self.date_arith(left, iv, sub))
    }

    fn date_arith(
        &mut self,
        d: &ast::Expr,
        iv: &ast::Interval,
        sub: bool,
    ) -> Result<Expr, SqlError> {
        let unit = interval_unit(iv)?;
        let d = self.expr(d)?;
        let n = self.expr(&iv.value)?;
        Ok(Expr::DateArith(Box::new(d), Box::new(n), unit, sub))
    }

    /// DATE_ADD / DATE_SUB / ADDDATE / SUBDATE with an INTERVAL argument
    /// (`None`: not one of those, or the day-count form).
    pub(crate) fn date_add_call(
        &mut self,
        name: &str,
        args: &[&FunctionArg],
    ) -> Option<Result<Expr, SqlError>> {
        let sub = match name {
            "DATE_ADD" | "ADDDATE" => false,
            "DATE_SUB" | "SUBDATE" => true,
            _ => return None,
        };
        let exprs: Vec<&ast::Expr> = args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        match exprs.as_slice() {
            [d, ast::Expr::Interval(iv)] if exprs.len() == args.len() => {
                Some(self.date_arith(d, iv, sub))
            }
            _ if name.starts_with("DATE_") => Some(Err(SqlError::syntax(name, 1))),
            _ => None,
        }
    }
}

fn wrong_arguments(what: &str) -> SqlError {
    SqlError::new(1210, "HY000", format!("Incorrect arguments to {what}"))
}

fn is_utf8(cs: &str) -> bool {
    matches!(
        cs.to_lowercase().as_str(),
        "utf8mb4" | "utf8" | "utf8mb3" | "binary"
    )
}

fn interval_unit(iv: &ast::Interval) -> Result<IntervalUnit, SqlError> {
    use DateTimeField as F;
    if iv.last_field.is_some() {
        return Err(SqlError::unsupported("an INTERVAL range"));
    }
    Ok(match &iv.leading_field {
        Some(F::Microsecond | F::Microseconds) => IntervalUnit::Microsecond,
        Some(F::Second | F::Seconds) => IntervalUnit::Second,
        Some(F::Minute | F::Minutes) => IntervalUnit::Minute,
        Some(F::Hour | F::Hours) => IntervalUnit::Hour,
        Some(F::Day | F::Days) => IntervalUnit::Day,
        Some(F::Week(None) | F::Weeks) => IntervalUnit::Week,
        Some(F::Month | F::Months) => IntervalUnit::Month,
        Some(F::Quarter) => IntervalUnit::Quarter,
        Some(F::Year | F::Years) => IntervalUnit::Year,
        other => {
            return Err(SqlError::unsupported(format!(
                "INTERVAL unit {}",
                other
                    .as_ref()
                    .map_or("(none)".to_string(), |f| f.to_string())
            )));
        }
    })
}

/// The target of CAST/CONVERT.
fn cast_target(ty: &DataType) -> Result<CastTo, SqlError> {
    use DataType as T;
    Ok(match ty {
        T::Signed | T::SignedInteger | T::Int(_) | T::Integer(_) | T::BigInt(_) => CastTo::Signed,
        T::Unsigned | T::UnsignedInteger | T::IntUnsigned(_) | T::BigIntUnsigned(_) => {
            CastTo::Unsigned
        }
        T::Decimal(info) | T::Dec(info) | T::Numeric(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => {
                    (*p, u64::try_from(*s).map_err(|_| bad_type(ty))?)
                }
            };
            if p == 0 || p > 38 || s > 30 || s > p {
                return Err(SqlError::new(
                    1426,
                    "42000",
                    format!("Too-big precision {p} specified for 'CAST'. Maximum is 38."),
                ));
            }
            CastTo::Decimal(p as u8, s as u8)
        }
        T::Double(_) | T::DoublePrecision | T::Real | T::Float(_) => CastTo::Double,
        T::Char(len) | T::Character(len) | T::Varchar(len) | T::Nvarchar(len) => {
            CastTo::Char(match len {
                None | Some(CharacterLength::Max) => None,
                Some(CharacterLength::IntegerLength { length, .. }) => {
                    Some(u32::try_from(*length).unwrap_or(u32::MAX))
                }
            })
        }
        T::Binary(None) | T::Text => CastTo::Char(None),
        T::Date => CastTo::Date,
        T::Datetime(_) | T::Timestamp(..) => CastTo::DateTime,
        other => return Err(SqlError::unsupported(format!("CAST AS {other}"))),
    })
}

fn bad_type(ty: &DataType) -> SqlError {
    SqlError::syntax(&ty.to_string(), 1)
}
