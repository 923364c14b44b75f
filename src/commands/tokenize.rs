//! `longmem tokenize`: text → ids, or ids → text.

use crate::cli::TokenizeArgs;
use anyhow::{bail, Context};

pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let tok = args.tokenizer.load()?;
    if args.decode {
        let ids = args
            .input
            .split_whitespace()
            .map(|s| s.parse::<u32>().with_context(|| format!("`{s}` is not a token id")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= tok.vocab_size()) {
            bail!(
                "token id {bad} is outside the {} vocabulary (0..{})",
                args.tokenizer,
                tok.vocab_size()
            );
        }
        println!("{}", tok.decode(&ids));
    } else {
        let ids: Vec<String> = tok.encode(&args.input).iter().map(u32::to_string).collect();
        println!("{}", ids.join(" "));
    }
    Ok(())
}
