"""Online evaluation callbacks for SSL: OnlineQueue, OnlineKNN (faiss), OnlineProbe, EMA, RankMe."""

__version__ = "0.1.0"
