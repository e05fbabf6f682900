//! The boxed future every async trait of the plugin interface returns. It lives apart from
//! the traits that use it so that no module needs another just for this alias.

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
