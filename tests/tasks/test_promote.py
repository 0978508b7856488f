from mlflow import MlflowClient

from tasks.promote import checkpoint_from_model_uri, promote_if_better, register_model
from tasks.tracking import configure_tracking


def test_champion_moves_only_when_beaten_by_margin(tiny_recipe, tiny_model_dir):
    import mlflow

    configure_tracking(tiny_recipe.tracking)
    name = "promote-test"
    with mlflow.start_run():
        v1 = register_model(tiny_model_dir, name)
        v2 = register_model(tiny_model_dir, name)
        v3 = register_model(tiny_model_dir, name)
    first = promote_if_better(name, v1, "heldout/pass_at_1", 0.40, margin=0.02)
    worse = promote_if_better(name, v2, "heldout/pass_at_1", 0.41, margin=0.02)   # within the margin
    better = promote_if_better(name, v3, "heldout/pass_at_1", 0.50, margin=0.02)
    assert first["promoted"] and not worse["promoted"] and better["promoted"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == v3
    assert str(client.get_model_version_by_alias(name, "challenger").version) == v3
    assert client.get_model_version(name, v2).tags["promotion"] == "challenger"

    ckpt = checkpoint_from_model_uri(f"models:/{name}@champion", tiny_recipe)
    assert ckpt.stage == f"{name}-v{v3}"
    from tasks.modeling import load_model
    model, tok = load_model(f"{ckpt.path}/model")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
