import { useRef, useState } from 'preact/hooks';
import { api, ApiError, type PollView } from '../api';
import { FieldError, FormError, TextField } from '../components/Field';
import { focusFirstInvalid, useDocumentTitle } from '../lib/dom';
import { createStore } from '../lib/store';
import { describeError, noteLimits } from '../messages';
import { navigate } from '../router';

const kMinOptions = 2;
const kMaxOptions = 10;
const kMinTags = 1;
const kMaxTags = 5;

/** The poll just created, so its page can say so without a round trip. */
export const justCreated = createStore<PollView | null>(null);

/** Title, 2-10 options and 1-5 tags; the server validates, its errors land on their fields. */
export function CreatePollScreen() {
  const [title, setTitle] = useState('');
  const [options, setOptions] = useState<string[]>(['', '']);
  const [tags, setTags] = useState<string[]>(['']);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  useDocumentTitle('New poll');

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    setBusy(true);
    setErrors({});
    setFormError(null);
    try {
      const poll = await api.createPoll({ title, options, tags });
      justCreated.set(poll);
      navigate(`/polls/${poll.id}`);
    } catch (error) {
      noteLimits(error);
      if (error instanceof ApiError && error.code === 'validation_failed') {
        const fields = error.fieldErrors();
        setErrors(fields);
        const known = Object.keys(fields).some((f) => /^(title|options|tags)(\[\d+\])?$/.test(f));
        setFormError(known ? 'Please fix the fields marked below.' : error.message);
      } else {
        setFormError(describeError(error));
      }
      focusFirstInvalid(form.current);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section class="screen create" aria-labelledby="create-title">
      <h1 id="create-title" tabIndex={-1}>
        New poll
      </h1>
      <form ref={form} class="card form" noValidate onSubmit={submit}>
        <FormError message={formError} />
        <TextField
          id="title"
          label="Question"
          hint="Up to 200 characters"
          maxLength={200}
          autoComplete="off"
          value={title}
          onValue={setTitle}
          error={errors.title}
        />
        <ListField
          name="options"
          legend="Options"
          hint="2 to 10 different answers"
          itemLabel="Option"
          values={options}
          onChange={setOptions}
          min={kMinOptions}
          max={kMaxOptions}
          maxLength={100}
          errors={errors}
        />
        <ListField
          name="tags"
          legend="Tags"
          hint="1 to 5 tags: lower-case letters, digits and -"
          itemLabel="Tag"
          values={tags}
          onChange={setTags}
          min={kMinTags}
          max={kMaxTags}
          maxLength={32}
          errors={errors}
          autoCapitalize="none"
        />
        <button type="submit" class="button primary wide" aria-disabled={busy ? 'true' : undefined}>
          {busy ? 'Publishing…' : 'Publish poll'}
        </button>
      </form>
    </section>
  );
}

interface ListFieldProps {
  name: 'options' | 'tags';
  legend: string;
  hint: string;
  itemLabel: string;
  values: string[];
  onChange: (values: string[]) => void;
  min: number;
  max: number;
  maxLength: number;
  /** The API's details by field: `options` for the list, `options[1]` for one item. */
  errors: Record<string, string>;
  autoCapitalize?: 'none' | 'off' | 'on' | 'sentences' | 'words' | 'characters';
}

/** A fieldset of inputs with add and remove, one error per item and one for the whole list. */
function ListField({ name, legend, hint, itemLabel, values, onChange, min, max, maxLength, errors, autoCapitalize }: ListFieldProps) {
  const listRef = useRef<HTMLOListElement>(null);
  const listError = errors[name];

  function add() {
    onChange([...values, '']);
    requestAnimationFrame(() => listRef.current?.querySelector<HTMLInputElement>('li:last-child input')?.focus());
  }

  function remove(index: number) {
    onChange(values.filter((_, i) => i !== index));
    requestAnimationFrame(() => {
      const inputs = listRef.current?.querySelectorAll<HTMLInputElement>('input');
      inputs?.[Math.min(index, inputs.length - 1)]?.focus();
    });
  }

  return (
    <fieldset
      class={listError ? 'field list has-error' : 'field list'}
      aria-describedby={[`${name}-hint`, listError ? `${name}-error` : ''].filter(Boolean).join(' ')}
    >
      <legend>{legend}</legend>
      <p id={`${name}-hint`} class="hint">
        {hint}
      </p>
      <FieldError id={`${name}-error`} message={listError} />
      <ol ref={listRef}>
        {values.map((value, index) => {
          const id = `${name}-${index}`;
          const error = errors[`${name}[${index}]`];
          return (
            <li key={index} class={error ? 'list-item has-error' : 'list-item'}>
              <label for={id} class="visually-hidden">
                {itemLabel} {index + 1}
              </label>
              <div class="list-row">
                <input
                  id={id}
                  value={value}
                  maxLength={maxLength}
                  autoComplete="off"
                  autoCapitalize={autoCapitalize}
                  placeholder={`${itemLabel} ${index + 1}`}
                  aria-invalid={error ? 'true' : undefined}
                  aria-describedby={error ? `${id}-error` : undefined}
                  onInput={(event) => {
                    const next = [...values];
                    next[index] = event.currentTarget.value;
                    onChange(next);
                  }}
                />
                {values.length > min && (
                  <button type="button" class="icon-button" onClick={() => remove(index)}>
                    <span aria-hidden="true">×</span>
                    <span class="visually-hidden">
                      Remove {itemLabel.toLowerCase()} {index + 1}
                    </span>
                  </button>
                )}
              </div>
              <FieldError id={`${id}-error`} message={error} />
            </li>
          );
        })}
      </ol>
      {values.length < max && (
        <button type="button" class="button secondary small" onClick={add}>
          Add {itemLabel.toLowerCase()}
        </button>
      )}
    </fieldset>
  );
}
