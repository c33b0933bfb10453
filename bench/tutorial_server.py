"""The tutorial's serving shape, for the serving benchmark only (not part of tunekit).

A FastAPI app whose GET handler runs one `transformers` pipeline call per request, as the GKE
tutorial's `serve.py` did, on the logged model's base and adapter (free decoding: the tutorial
had no grammar). Start it with uvicorn; the model URI comes from $MODEL_URI.
"""

from __future__ import annotations

import os

import mlflow
from fastapi import FastAPI
from transformers import pipeline as make_pipeline

app = FastAPI()
logged = mlflow.pyfunc.load_model(os.environ["MODEL_URI"]).unwrap_python_model()
pipeline = make_pipeline("text-generation", model=logged.model, tokenizer=logged.tokenizer)


@app.get("/predict")
def predict(message: str, max_new_tokens: int = 64) -> dict:
    result = pipeline(message, max_new_tokens=max_new_tokens, do_sample=False,
                      return_full_text=False)  # fmt: skip
    return {"sql": result[0]["generated_text"].strip()}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
