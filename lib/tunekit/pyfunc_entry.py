"""The logged model's entry: MLflow's "model from code" file (`tunekit.pyfunc_model`).

MLflow runs this file to load the model, with the modules of `pyfunc_model.CODE` on its path.
"""

from mlflow.models import set_model

from tunekit.pyfunc_model import TextToSQL

set_model(TextToSQL())
