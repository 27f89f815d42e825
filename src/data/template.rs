//! A model's own chat template (Jinja), rendered as transformers' `apply_chat_template`
//! renders it: Jinja2's `trim_blocks` and `lstrip_blocks`, `raise_exception`, Python's
//! string methods, the model's `bos_token` and `eos_token`. The rendered text is tokenised
//! whole without adding special tokens (as `apply_chat_template(tokenize=True)` does); the
//! tokens that carry loss are those inside an assistant turn's span, found by rendering the
//! conversation up to that turn with and without it.

use anyhow::{Context, Result, anyhow, bail};
use minijinja::{Environment, ErrorKind, Value, context};
use std::ops::Range;

use super::chat::{Role, Turn};
use crate::models::ChatTemplateText;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    pub fn new(text: ChatTemplateText) -> Result<Self> {
        let mut env = Environment::new();
        // transformers renders with these two on (and Jinja2's default of dropping one
        // trailing newline, which minijinja shares).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", text.source)
            .map_err(|e| anyhow!("the model's chat template does not compile: {e}"))?;
        Ok(Self {
            env,
            bos_token: text.bos_token,
            eos_token: text.eos_token,
        })
    }

    /// The conversation as text; with `add_generation_prompt`, followed by what opens the
    /// assistant's answer.
    pub fn render(&self, turns: &[Turn], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = turns
            .iter()
            .map(|t| context! { role => t.role.name(), content => t.content })
            .collect();
        self.env
            .get_template("chat")
            .expect("added in new")
            .render(context! {
                messages,
                add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| anyhow!("the chat template failed to render: {e}"))
    }

    /// The rendered conversation and the byte ranges of it the model learns: each assistant
    /// turn as the template writes it (its words and the end-of-turn marks after them up
    /// to the next turn), or only the last one.
    pub fn render_with_spans(
        &self,
        turns: &[Turn],
        last_turn_only: bool,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let whole = self.render(turns, false)?;
        let assistant: Vec<usize> = turns
            .iter()
            .enumerate()
            .filter(|(_, t)| t.role == Role::Assistant)
            .map(|(i, _)| i)
            .collect();
        let learned = match (last_turn_only, assistant.last()) {
            (true, Some(&last)) => vec![last],
            _ => assistant,
        };
        let mut spans = Vec::with_capacity(learned.len());
        for i in learned {
            let before = self.render(&turns[..i], true)?;
            let through = self.render(&turns[..=i], false)?;
            if !whole.starts_with(&before)
                || !whole.starts_with(&through)
                || before.len() > through.len()
            {
                bail!(
                    "the chat template writes the conversation up to turn {} differently from the whole conversation, so the assistant's words cannot be found in it",
                    i + 1
                );
            }
            spans.push(before.len()..through.len());
        }
        Ok((whole, spans))
    }

    /// Token ids of the rendered conversation and, per token, whether it carries loss (its
    /// first byte lies in a learned span).
    pub fn encode(
        &self,
        tok: &tokenizers::Tokenizer,
        turns: &[Turn],
        last_turn_only: bool,
    ) -> Result<(Vec<u32>, Vec<bool>)> {
        let (text, spans) = self.render_with_spans(turns, last_turn_only)?;
        let enc = tok
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenizer failed: {e}"))?;
        let mask = enc
            .get_offsets()
            .iter()
            .map(|&(start, end)| end > start && spans.iter().any(|s| s.contains(&start)))
            .collect();
        Ok((enc.get_ids().to_vec(), mask))
    }
}

/// How conversations become text: the model's own template, or the plain one
/// ([`super::chat::plain_pieces`]) for a model without one; and whether every assistant
/// turn is learned or only the last.
#[derive(Debug, Default)]
pub struct ChatRendering {
    pub template: Option<ChatTemplate>,
    pub last_turn_only: bool,
}

impl ChatRendering {
    /// The rendering for `model`'s files (its template, if it has one).
    pub fn for_model(model: &crate::models::ModelFiles, last_turn_only: bool) -> Result<Self> {
        let template = match model.chat_template()? {
            Some(text) => Some(
                ChatTemplate::new(text)
                    .with_context(|| format!("model {}", model.path().display()))?,
            ),
            None => None,
        };
        Ok(Self {
            template,
            last_turn_only,
        })
    }

    /// The text a model is asked to continue for `turns`: every turn before the last
    /// assistant turn, then the opening of the assistant's answer.
    pub fn prompt(&self, turns: &[Turn]) -> Result<String> {
        let last = turns
            .iter()
            .rposition(|t| t.role == Role::Assistant)
            .unwrap_or(turns.len());
        match &self.template {
            Some(t) => t.render(&turns[..last], true),
            None => Ok(super::chat::plain_prompt(turns)),
        }
    }

    /// Which template renders conversations, in words.
    pub fn describe(&self) -> &'static str {
        match self.template {
            Some(_) => "the model's chat template",
            None => "the plain template (the model has no chat template)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(ChatTemplateText {
            source: "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'].strip() + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        })
        .unwrap()
    }

    fn turns(texts: &[(Role, &str)]) -> Vec<Turn> {
        texts
            .iter()
            .map(|(role, c)| Turn {
                role: *role,
                content: c.to_string(),
            })
            .collect()
    }

    #[test]
    fn assistant_spans_are_found_by_rendering_prefixes() {
        let t = turns(&[
            (Role::User, " hi "),
            (Role::Assistant, "hello"),
            (Role::User, "again"),
            (Role::Assistant, "yes"),
        ]);
        let (text, spans) = chatml().render_with_spans(&t, false).unwrap();
        let learned: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(learned, ["hello<|im_end|>\n", "yes<|im_end|>\n"]);
        assert!(text.starts_with("<|im_start|>user\nhi<|im_end|>"), "{text}");
        let (_, last) = chatml().render_with_spans(&t, true).unwrap();
        assert_eq!(last, spans[1..]);
    }

    #[test]
    fn raise_exception_and_compile_errors_are_messages() {
        let strict = ChatTemplate::new(ChatTemplateText {
            source: "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok".into(),
            bos_token: String::new(),
            eos_token: String::new(),
        })
        .unwrap();
        let e = strict
            .render(&turns(&[(Role::System, "s"), (Role::User, "u")]), false)
            .unwrap_err();
        assert!(e.to_string().contains("System role not supported"), "{e}");
        let e = ChatTemplate::new(ChatTemplateText {
            source: "{% for %}".into(),
            bos_token: String::new(),
            eos_token: String::new(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("does not compile"), "{e}");
    }
}
