//! Conversations as the data people already have writes them: Alpaca (`instruction`,
//! `input`, `output`, `system`, `history`), ShareGPT (`conversations` of `from`/`value`
//! turns) and chat `messages` (`role`/`content`), read as LLaMA-Factory reads them, into one
//! form: a list of turns. A model learns the assistant's turns only.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Who says a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role a file names: OpenAI's `system`/`user`/`assistant`, ShareGPT's
    /// `system`/`human`/`gpt` (and `user`/`assistant`, which ShareGPT files also use).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "system" => Role::System,
            "user" | "human" => Role::User,
            "assistant" | "gpt" => Role::Assistant,
            other => bail!(
                "unknown role `{other}` (known: system, user/human, assistant/gpt; tool and function turns are not supported)"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// Checks a conversation's shape: at most one system turn, first; then user and assistant
/// turns alternating from a user turn; at least one assistant turn; no empty assistant turn.
pub fn check(turns: &[Turn]) -> Result<()> {
    let body = match turns.first() {
        Some(Turn {
            role: Role::System, ..
        }) => &turns[1..],
        _ => turns,
    };
    for (i, t) in body.iter().enumerate() {
        let want = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if t.role != want {
            bail!(
                "turn {} is a {} turn where a {} turn belongs (a system turn may only come first; user and assistant alternate, from the user)",
                i + 1 + turns.len() - body.len(),
                t.role.name(),
                want.name()
            );
        }
        if t.role == Role::Assistant && t.content.trim().is_empty() {
            bail!(
                "turn {} is an empty assistant turn",
                i + 1 + turns.len() - body.len()
            );
        }
    }
    if !body.iter().any(|t| t.role == Role::Assistant) {
        bail!("the conversation has no assistant turn to learn from");
    }
    Ok(())
}

/// An Alpaca row's turns: the system prompt, each `history` pair, then `instruction` and
/// `input` joined by a line break (as LLaMA-Factory joins them) and `output`.
pub fn from_alpaca(
    instruction: &str,
    input: Option<&str>,
    output: &str,
    system: Option<&str>,
    history: &[(String, String)],
) -> Result<Vec<Turn>> {
    if output.trim().is_empty() {
        bail!("empty `output`");
    }
    let mut turns = Vec::new();
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        turns.push(Turn {
            role: Role::System,
            content: s.to_string(),
        });
    }
    for (q, a) in history {
        turns.push(Turn {
            role: Role::User,
            content: q.clone(),
        });
        turns.push(Turn {
            role: Role::Assistant,
            content: a.clone(),
        });
    }
    let prompt = match input.filter(|i| !i.is_empty()) {
        Some(i) => format!("{instruction}\n{i}"),
        None => instruction.to_string(),
    };
    turns.push(Turn {
        role: Role::User,
        content: prompt,
    });
    turns.push(Turn {
        role: Role::Assistant,
        content: output.to_string(),
    });
    check(&turns)?;
    Ok(turns)
}

/// Turns from a list of `{role_key: ..., content_key: ...}` objects (`messages` with
/// `role`/`content`, `conversations` with `from`/`value`), with a separate `system` prompt
/// put first when the list has none.
pub fn from_list(
    list: &serde_json::Value,
    field: &str,
    role_key: &str,
    content_key: &str,
    system: Option<&str>,
) -> Result<Vec<Turn>> {
    let Some(items) = list.as_array() else {
        bail!("`{field}` must be a list of turns");
    };
    let mut turns = Vec::with_capacity(items.len() + 1);
    for (i, item) in items.iter().enumerate() {
        let role = item.get(role_key).and_then(|r| r.as_str());
        let content = item.get(content_key).and_then(|c| c.as_str());
        let (Some(role), Some(content)) = (role, content) else {
            bail!(
                "`{field}` turn {}: needs `{role_key}` and `{content_key}` as strings",
                i + 1
            );
        };
        let role =
            Role::parse(role).map_err(|e| anyhow::anyhow!("`{field}` turn {}: {e}", i + 1))?;
        turns.push(Turn {
            role,
            content: content.to_string(),
        });
    }
    if let Some(s) = system.filter(|s| !s.is_empty())
        && turns.first().is_none_or(|t| t.role != Role::System)
    {
        turns.insert(
            0,
            Turn {
                role: Role::System,
                content: s.to_string(),
            },
        );
    }
    check(&turns).map_err(|e| anyhow::anyhow!("`{field}`: {e}"))?;
    Ok(turns)
}

/// The plain template for a model without a chat template of its own: each turn as a role
/// header line and its text, a blank line between turns, the model's end-of-sequence token
/// after each assistant turn. As pieces of text, each marked with whether the model learns
/// it (the assistant's words; the end-of-sequence token is added by the caller).
///
/// ```text
/// System: {system}
///
/// User: {user}
///
/// Assistant: {assistant}<eos>
/// ```
pub fn plain_pieces(turns: &[Turn]) -> Vec<(String, bool)> {
    let mut pieces = Vec::with_capacity(turns.len() * 2);
    for (i, t) in turns.iter().enumerate() {
        let sep = if i == 0 { "" } else { "\n\n" };
        match t.role {
            Role::System => pieces.push((format!("{sep}System: {}", t.content), false)),
            Role::User => pieces.push((format!("{sep}User: {}", t.content), false)),
            Role::Assistant => {
                pieces.push((format!("{sep}Assistant:"), false));
                pieces.push((format!(" {}", t.content), true));
            }
        }
    }
    pieces
}

/// The question of a conversation as the plain template asks it: every turn before its
/// last assistant turn, then the assistant's header (what the playground sends).
pub fn plain_prompt(turns: &[Turn]) -> String {
    let last = turns
        .iter()
        .rposition(|t| t.role == Role::Assistant)
        .unwrap_or(turns.len());
    let mut text: String = plain_pieces(&turns[..last])
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    text.push_str(if last == 0 {
        "Assistant:"
    } else {
        "\n\nAssistant:"
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpaca_rows_become_turns_as_llama_factory_reads_them() {
        let t = from_alpaca(
            "翻译成英文",
            Some("你好"),
            "Hello",
            Some("你是翻译"),
            &[("1+1=?".into(), "2".into())],
        )
        .unwrap();
        let roles: Vec<_> = t.iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant
            ]
        );
        assert_eq!(t[3].content, "翻译成英文\n你好");
        assert!(from_alpaca("q", None, " ", None, &[]).is_err());
    }

    #[test]
    fn turn_lists_are_checked_and_named_in_errors() {
        let ok: serde_json::Value = serde_json::json!([
            {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}
        ]);
        let t = from_list(&ok, "conversations", "from", "value", Some("be brief")).unwrap();
        assert_eq!(t[0].role, Role::System);
        let bad_role = serde_json::json!([{"role": "tool", "content": "x"}]);
        let e = from_list(&bad_role, "messages", "role", "content", None).unwrap_err();
        assert!(e.to_string().contains("unknown role `tool`"), "{e}");
        let no_answer = serde_json::json!([{"role": "user", "content": "x"}]);
        let e = from_list(&no_answer, "messages", "role", "content", None).unwrap_err();
        assert!(e.to_string().contains("no assistant turn"), "{e}");
        let twice = serde_json::json!([
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"}
        ]);
        let e = from_list(&twice, "messages", "role", "content", None).unwrap_err();
        assert!(e.to_string().contains("turn 2 is a user turn"), "{e}");
    }

    #[test]
    fn the_plain_template_trains_on_the_assistant_words_only() {
        let turns = vec![
            Turn {
                role: Role::User,
                content: "2+2?".into(),
            },
            Turn {
                role: Role::Assistant,
                content: "4".into(),
            },
        ];
        let pieces = plain_pieces(&turns);
        let text: String = pieces.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(text, "User: 2+2?\n\nAssistant: 4");
        let trained: Vec<_> = pieces.iter().filter(|(_, t)| *t).collect();
        assert_eq!(trained, [&(" 4".to_string(), true)]);
        assert_eq!(plain_prompt(&turns), "User: 2+2?\n\nAssistant:");
    }
}
