//! `longmem lm`: load a backbone from local weights and score a text with it, the quickest
//! check that a checkpoint loads and behaves.

use crate::cli::LmArgs;
use crate::models::{weights, Backbone, BackboneConfig};
use anyhow::{bail, Context};
use std::path::Path;
use tch::{nn, Kind, Tensor};

pub fn run(args: &LmArgs) -> anyhow::Result<()> {
    let model_dir = args.weights.is_dir().then_some(args.weights.as_path());
    let config_path = match (&args.config, model_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join("config.json"),
        (None, None) => args.weights.with_file_name("config.json"),
    };
    let config = read_config(&config_path)?;
    let tokenizer = match (&args.tokenizer, model_dir) {
        (Some(kind), _) => kind.clone(),
        (None, Some(dir)) if dir.join("tokenizer.json").is_file() => crate::tokenizer::TokenizerKind::Hf(dir.into()),
        (None, _) => crate::tokenizer::TokenizerKind::Gpt2,
    };
    let tok = tokenizer.load()?;
    if tok.vocab_size() as i64 > config.vocab_size {
        bail!(
            "the tokenizer {} has {} ids but the model's vocab_size is {}; pick --tokenizer to match the model",
            tokenizer,
            tok.vocab_size(),
            config.vocab_size
        );
    }
    let device = args.device.resolve()?;
    let vs = nn::VarStore::new(device);
    let model = Backbone::new(&vs.root(), &config);
    weights::load_safetensors(&vs, &args.weights, &config)?;

    let ids: Vec<i64> = tok.encode(&args.text).into_iter().map(i64::from).collect();
    if ids.is_empty() {
        bail!("the text is empty: give at least one token to score");
    }
    if config.max_segment_len().is_some() && ids.len() as i64 > config.n_positions {
        bail!(
            "the text is {} tokens, more than the model's n_positions = {}",
            ids.len(),
            config.n_positions
        );
    }
    let _guard = tch::no_grad_guard();
    let tokens = Tensor::from_slice(&ids).unsqueeze(0).to_device(device);
    let logits = model.forward(&tokens, false).logits.squeeze_dim(0).to_kind(Kind::Float);
    let t = ids.len() as i64;
    if t > 1 {
        let nll = logits
            .narrow(0, 0, t - 1)
            .cross_entropy_for_logits(&tokens.squeeze_dim(0).narrow(0, 1, t - 1));
        let nll = nll.double_value(&[]);
        println!("tokens: {t}  mean NLL: {nll:.4}  perplexity: {:.3}", nll.exp());
    } else {
        println!("tokens: 1 (perplexity needs at least two)");
    }
    let last = logits.get(t - 1).log_softmax(-1, Kind::Float);
    let (logp, top) = last.topk(args.top.min(config.vocab_size), -1, true, true);
    println!("next-token candidates:");
    for i in 0..top.size()[0] {
        let id = top.int64_value(&[i]) as u32;
        let text = if (id as usize) < tok.vocab_size() {
            tok.decode(&[id])
        } else {
            format!("<id {id}>")
        };
        println!("  {:>6}  p={:.4}  {:?}", id, logp.double_value(&[i]).exp(), text);
    }
    Ok(())
}

/// An HF `config.json` (read by its `model_type`), or a TOML [`BackboneConfig`].
fn read_config(path: &Path) -> anyhow::Result<BackboneConfig> {
    if path.extension().is_some_and(|e| e == "json") {
        return Ok(crate::models::hf::config_of_file(path)?);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read model config {}", path.display()))?;
    let config: BackboneConfig =
        toml::from_str(&text).with_context(|| format!("{} is not a valid backbone config", path.display()))?;
    config.validate().with_context(|| format!("in {}", path.display()))?;
    Ok(config)
}
