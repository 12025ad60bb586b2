"""The serving docs name one TF Serving image, the one the code prints, and the model names export pushes to."""

import re

from components import configs
from serving import push

DOCS = [configs.REPO_ROOT / "README.md", configs.REPO_ROOT / "docs" / "serving.md"]


def test_every_tensorflow_serving_image_in_the_docs_has_the_one_tag():
    mentions = [(path.name, match.group(0)) for path in DOCS
                for match in re.finditer(r"tensorflow/serving(:[\w.-]+)?", path.read_text())]
    assert len(mentions) >= 3  # README's docker line, the docs' image and docker line
    assert {image for _, image in mentions} == {push.SERVING_IMAGE}, mentions


def test_the_docs_docker_lines_serve_the_names_export_pushes_to():
    served = {match.group(1) for path in DOCS
              for match in re.finditer(r"docker run .*-e MODEL_NAME=(\w+) ", path.read_text())}
    assert served == {configs.ExportConfig.model_name, configs.ExportConfig.demo_model_name}
