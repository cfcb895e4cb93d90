package main

import (
	"os"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The orchestrators give serve more time than its shutdown budget (here,
// beside the constants): Kubernetes' terminationGracePeriodSeconds counts
// the preStop pause too, and compose's stop_grace_period; a shorter one
// kills answers mid-drain.
func TestGracePeriodCoversShutdown(t *testing.T) {
	budget := httpShutdownTimeout + drainTimeout + adminShutdownTimeout

	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Grace      int `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Lifecycle struct {
							PreStop struct {
								Sleep struct {
									Seconds int `yaml:"seconds"`
								} `yaml:"sleep"`
							} `yaml:"preStop"`
						} `yaml:"lifecycle"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	readYAML(t, "../../deploy/k8s/deployment.yaml", &dep)
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		t.Fatal("deployment.yaml: no containers")
	}
	preStop := time.Duration(pod.Containers[0].Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(pod.Grace) * time.Second; grace <= preStop+budget {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed the preStop pause %v plus the shutdown budget %v", grace, preStop, budget)
	}

	var compose struct {
		Services map[string]struct {
			StopGrace string `yaml:"stop_grace_period"`
		} `yaml:"services"`
	}
	readYAML(t, "../../deploy/docker-compose.yml", &compose)
	grace, err := time.ParseDuration(compose.Services["bot"].StopGrace)
	if err != nil || grace <= budget {
		t.Errorf("compose bot stop_grace_period %q does not exceed the shutdown budget %v", compose.Services["bot"].StopGrace, budget)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
