//! SmolLM2-Instruct's chat template (ChatML), as the GGUF's `tokenizer.chat_template` renders
//! it, so prompts need no Jinja engine.

use int8_wgpu::gguf::Gguf;

use crate::Result;

/// The system prompt the template inserts when the conversation does not start with one.
pub const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The Jinja template [`render`] implements, exactly as SmolLM2-Instruct's GGUF stores it.
pub const TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// One turn of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'a str,
    /// The turn's text.
    pub content: &'a str,
}

/// The prompt for `messages`: each as `<|im_start|>{role}\n{content}<|im_end|>\n`, after the
/// default system turn when the first is not `system`; with `add_generation_prompt`, the
/// opening of the assistant's turn follows.
pub fn render(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    if messages.first().is_some_and(|m| m.role != "system") {
        out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for m in messages {
        out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// Checks that `gguf`'s chat template is the one [`render`] implements; another model's
/// template is an error that says so.
pub fn check(gguf: &Gguf) -> Result<()> {
    match gguf.tokenizer()?.chat_template {
        Some(TEMPLATE) => Ok(()),
        Some(_) => {
            Err("the GGUF's chat template is not SmolLM2's ChatML template, which chat::render implements".into())
        }
        None => Err("the GGUF has no chat template (tokenizer.chat_template)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Message, render};

    #[test]
    fn the_default_system_turn_comes_first_unless_one_is_given() {
        let user = Message { role: "user", content: "Hi" };
        assert_eq!(
            render(&[user], true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let system = Message { role: "system", content: "Be brief." };
        assert_eq!(
            render(&[system, user], false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        assert_eq!(render(&[], true), "<|im_start|>assistant\n");
    }
}
