//! Pool (in progress).
